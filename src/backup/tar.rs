//! A minimal ustar writer: regular files only, enough for footage archives
//! that any `tar` reads (no external zip or tar binary needed on the board).

use std::io::{self, Write};

/// Writes one file's header; its content follows, then `pad`.
pub fn header(out: &mut impl Write, name: &str, size: u64, mtime_s: u64) -> io::Result<()> {
    let mut h = [0u8; 512];
    let (prefix, name) = split_name(name)?;
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime_s);
    h[148..156].copy_from_slice(b"        ");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    octal(&mut h[148..155], u64::from(sum));
    h[155] = b' ';
    out.write_all(&h)
}

/// Zero bytes after a file of `size` bytes, to the next 512-byte block.
pub fn pad(out: &mut impl Write, size: u64) -> io::Result<()> {
    let rest = (512 - size % 512) % 512;
    out.write_all(&vec![0u8; rest as usize])
}

/// The end of an archive: two zero blocks.
pub fn finish(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&[0u8; 1024])
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// Splits a path into ustar's prefix (≤ 155) and name (≤ 100) at a `/`.
fn split_name(path: &str) -> io::Result<(&str, &str)> {
    if path.len() <= 100 {
        return Ok(("", path));
    }
    path.char_indices()
        .filter(|(_, c)| *c == '/')
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .find(|(prefix, name)| prefix.len() <= 155 && name.len() <= 100)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("path too long for tar: {path}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_reads_what_is_written() {
        let dir = std::env::temp_dir().join(format!("heldar-tar-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let archive = dir.join("a.tar");
        let mut out = std::fs::File::create(&archive).expect("create");
        let long = format!("{}/{}.mp4", "d".repeat(120), "f".repeat(40));
        for (name, content) in [("cam/2026-11-24/143000.mp4", b"hello".to_vec()), (long.as_str(), vec![1u8; 700])] {
            header(&mut out, name, content.len() as u64, 1_700_000_000).expect("header");
            out.write_all(&content).expect("content");
            pad(&mut out, content.len() as u64).expect("pad");
        }
        finish(&mut out).expect("finish");
        drop(out);
        let listed = std::process::Command::new("tar").arg("-tvf").arg(&archive).output().expect("tar");
        let listing = String::from_utf8_lossy(&listed.stdout);
        assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
        assert!(listing.contains("cam/2026-11-24/143000.mp4") && listing.contains(" 5 "), "{listing}");
        assert!(listing.contains(&long), "{listing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
