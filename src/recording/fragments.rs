//! The complete part of a fragmented MP4 segment. A power cut can leave the
//! last fragment half on disk (its `moof` without its `mdat`, or an `mdat`
//! cut short); what comes before it is whole and plays. Walks the top-level
//! box headers only, never the samples.

use std::io::{Read, Seek, SeekFrom};

/// What the top-level boxes of a segment file say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragments {
    /// Bytes from the start that form whole boxes, ending after a whole fragment (or the
    /// header when there is none).
    pub complete_len: u64,
    /// Whole fragments (`moof` followed by its `mdat`).
    pub fragments: u64,
    /// Bytes before the first fragment: the init part (`ftyp`, `moov`) a player reads first.
    pub init_len: u64,
}

/// Trims the file at `path` to its complete part; returns what it holds and how many bytes
/// were cut off. Syncs it when it was cut, so the trimmed length is what the index will
/// see after another power cut.
pub fn trim_partial_fragment(path: &std::path::Path) -> std::io::Result<(Fragments, u64)> {
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let found = scan(&mut file, len)?;
    if found.complete_len < len {
        file.set_len(found.complete_len)?;
        file.sync_all()?;
    }
    Ok((found, len - found.complete_len))
}

/// A top-level box: its type, where it starts and its size (header included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopBox {
    /// Four-character type.
    pub kind: [u8; 4],
    /// Offset from the start of the file.
    pub offset: u64,
    /// Size in bytes, header included.
    pub size: u64,
}

/// The whole top-level boxes of the `len` bytes of `file`, in order, up to the first that is
/// cut short or is no box.
pub fn top_level_boxes(file: &mut (impl Read + Seek), len: u64) -> std::io::Result<Vec<TopBox>> {
    let mut boxes = Vec::new();
    let mut offset = 0u64;
    while len - offset >= 8 {
        file.seek(SeekFrom::Start(offset))?;
        let mut header = [0u8; 16];
        file.read_exact(&mut header[..8])?;
        let size32 = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let kind = [header[4], header[5], header[6], header[7]];
        let (size, header_len) = match size32 {
            0 => (len - offset, 8),
            1 => {
                if len - offset < 16 {
                    break;
                }
                file.read_exact(&mut header[8..16])?;
                (u64::from_be_bytes(header[8..16].try_into().unwrap_or_default()), 16)
            }
            n => (u64::from(n), 8),
        };
        // Box types are printable: anything else (zeros a power cut left, say) is no box.
        if size < header_len || size > len - offset || !kind.iter().all(u8::is_ascii_graphic) {
            break;
        }
        boxes.push(TopBox { kind, offset, size });
        offset += size;
    }
    Ok(boxes)
}

/// Reads the top-level boxes of the `len` bytes of `file`.
pub fn scan(file: &mut (impl Read + Seek), len: u64) -> std::io::Result<Fragments> {
    Ok(summarize(&top_level_boxes(file, len)?))
}

/// What a file's top-level boxes hold: its complete part, its fragments, its init part.
pub fn summarize(boxes: &[TopBox]) -> Fragments {
    let (mut complete_len, mut fragments, mut pending_moof) = (0u64, 0u64, false);
    for b in boxes {
        let end = b.offset + b.size;
        match &b.kind {
            b"moof" => pending_moof = true,
            b"mdat" if pending_moof => {
                pending_moof = false;
                fragments += 1;
                complete_len = end;
            }
            _ if !pending_moof => complete_len = end,
            _ => {}
        }
    }
    let init_len = boxes.iter().find(|b| &b.kind == b"moof").map_or(complete_len, |b| b.offset);
    Fragments { complete_len, fragments, init_len }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn boxed(kind: &[u8; 4], body: usize) -> Vec<u8> {
        let mut b = ((body + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend(std::iter::repeat_n(0u8, body));
        b
    }

    fn scan_bytes(bytes: &[u8]) -> Fragments {
        scan(&mut Cursor::new(bytes), bytes.len() as u64).expect("scan")
    }

    fn segment(fragments: usize) -> Vec<u8> {
        let mut file = [boxed(b"ftyp", 16), boxed(b"moov", 500)].concat();
        for _ in 0..fragments {
            file.extend(boxed(b"moof", 100));
            file.extend(boxed(b"mdat", 3000));
        }
        file
    }

    #[test]
    fn a_whole_segment_is_complete() {
        let file = segment(3);
        assert_eq!(
            scan_bytes(&file),
            Fragments { complete_len: file.len() as u64, fragments: 3, init_len: 16 + 8 + 508 }
        );
    }

    #[test]
    fn a_cut_mdat_or_a_lone_moof_is_not() {
        let whole = segment(2);
        let mut cut = whole.clone();
        cut.extend(boxed(b"moof", 100));
        cut.extend(&boxed(b"mdat", 3000)[..1200]);
        assert_eq!(scan_bytes(&cut), Fragments { complete_len: whole.len() as u64, fragments: 2, init_len: 532 });
        let mut lone = whole.clone();
        lone.extend(boxed(b"moof", 100));
        assert_eq!(scan_bytes(&lone).complete_len, whole.len() as u64);
        let mut torn_header = whole.clone();
        torn_header.extend(&[0, 0, 1]);
        assert_eq!(scan_bytes(&torn_header).complete_len, whole.len() as u64);
    }

    #[test]
    fn a_header_only_file_has_no_fragment() {
        let header = segment(0);
        assert_eq!(scan_bytes(&header), Fragments { complete_len: 532, fragments: 0, init_len: 532 });
        assert_eq!(scan_bytes(&[]), Fragments { complete_len: 0, fragments: 0, init_len: 0 });
        assert_eq!(scan_bytes(&[0u8; 4096]).complete_len, 0, "zeros (a lost tail) are no box");
        let mut zero_tail = segment(1);
        let whole = zero_tail.len() as u64;
        zero_tail.extend([0u8; 4096]);
        assert_eq!(scan_bytes(&zero_tail), Fragments { complete_len: whole, fragments: 1, init_len: 532 });
    }

    #[test]
    fn large_sizes_are_read() {
        let mut file = segment(1);
        let mut large = 1u32.to_be_bytes().to_vec();
        large.extend_from_slice(b"free");
        large.extend(24u64.to_be_bytes());
        large.extend([0u8; 8]);
        file.extend(&large);
        assert_eq!(scan_bytes(&file).complete_len, file.len() as u64);
    }
}
