//! Which mount a path lies on, from `/proc/self/mountinfo`: a `usb`
//! destination must be on a mount of its own, never on the root file system.

use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the device.
    pub device: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// File system type.
    pub fstype: String,
    /// Mount source (device path, server share, …).
    pub source: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // `\ooo` with the first digit at most 3: one byte. Anything else stays as written.
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && (b'0'..=b'3').contains(&bytes[i + 1])
            && bytes[i + 2..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            out.push((bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo` text.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some(Mount {
                device: left.get(2)?.to_string(),
                mount_point: PathBuf::from(unescape(left.get(4)?)),
                fstype: right.first()?.to_string(),
                source: unescape(right.get(1).copied().unwrap_or("")),
            })
        })
        .collect()
}

/// The mount `path` lies on: the last-mounted one with the longest matching mount point.
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.components().count(), *i))
        .map(|(_, m)| m)
}

/// Checks that `path` is on a mount of its own (not the root file system's); the error says why not.
pub fn check_separate_mount(mounts: &[Mount], path: &Path) -> Result<(), String> {
    let root = mount_of(mounts, Path::new("/")).ok_or("no root file system in mountinfo")?;
    let mount = mount_of(mounts, path).ok_or_else(|| format!("{} is on no mount", path.display()))?;
    if mount.mount_point == Path::new("/") || mount.device == root.device {
        return Err(format!(
            "{} is not on a mounted stick or share (it would be written to the root file system): mount the device first",
            path.display()
        ));
    }
    Ok(())
}

/// Reads this process's mounts.
pub fn current_mounts() -> std::io::Result<Vec<Mount>> {
    Ok(parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw
41 22 8:1 / /media/usb\\0400 rw,relatime shared:30 - vfat /dev/sda1 rw
42 22 0:40 / /mnt/nas rw - nfs4 nas:/backup rw
";

    #[test]
    fn finds_the_mount_of_a_path() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mount_of(&mounts, Path::new("/media/usb 0/heldar")).map(|m| m.fstype.as_str()), Some("vfat"));
        assert_eq!(mount_of(&mounts, Path::new("/var/lib")).map(|m| m.mount_point.clone()), Some(PathBuf::from("/")));
        assert_eq!(mount_of(&mounts, Path::new("/mnt/nas/x")).map(|m| m.source.as_str()), Some("nas:/backup"));
    }

    #[test]
    fn a_usb_path_must_be_on_its_own_mount() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert!(check_separate_mount(&mounts, Path::new("/media/usb 0/heldar")).is_ok());
        assert!(check_separate_mount(&mounts, Path::new("/mnt/nas/heldar")).is_ok());
        let err = check_separate_mount(&mounts, Path::new("/media/usb1/heldar")).expect_err("not mounted");
        assert!(err.contains("root file system"), "{err}");
    }
}
