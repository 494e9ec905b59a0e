//! Fragmented MP4 as the recorder writes it: an init part (`ftyp`, `moov`
//! with one video track and no samples) and then fragments (`moof` + `mdat`)
//! of whole frames, each complete on its own, so a file cut by a power loss
//! plays up to its last whole fragment (see `recording::fragments`).

/// Ticks per second of the video track: RTP's video clock.
pub const TIMESCALE: u32 = 90_000;

/// One frame of a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Ticks until the next frame.
    pub duration: u32,
    /// Bytes of the frame (NAL units, each behind its 4-byte length).
    pub size: u32,
    /// A key frame (a random access point).
    pub key: bool,
}

/// Appends a box of type `kind` whose body `body` writes.
fn boxed(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(kind);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends a full box (version and flags after the header).
fn full(out: &mut Vec<u8>, kind: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Vec<u8>)) {
    boxed(out, kind, |out| {
        out.extend_from_slice(&((u32::from(version) << 24) | flags).to_be_bytes());
        body(out);
    });
}

fn u32s(out: &mut Vec<u8>, values: &[u32]) {
    for v in values {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// The unity matrix of `mvhd` and `tkhd`.
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// The init part of a segment: `sample_entry` is the track's `avc1`/`hvc1` box (retina
/// builds it from the stream's parameter sets), `width`×`height` its picture size.
pub fn init_segment(sample_entry: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(700 + sample_entry.len());
    boxed(&mut out, b"ftyp", |out| {
        out.extend_from_slice(b"isom");
        u32s(out, &[0x200]);
        out.extend_from_slice(b"isomiso5iso6mp41");
    });
    boxed(&mut out, b"moov", |out| {
        full(out, b"mvhd", 0, 0, |out| {
            // Times, timescale, duration (unknown: fragments follow), rate, volume.
            u32s(out, &[0, 0, 1000, 0, 0x0001_0000]);
            out.extend_from_slice(&[0x01, 0x00, 0, 0]);
            u32s(out, &[0, 0]);
            u32s(out, &MATRIX);
            u32s(out, &[0; 6]);
            u32s(out, &[2]); // next track id
        });
        boxed(out, b"trak", |out| {
            // Enabled, in the movie.
            full(out, b"tkhd", 0, 3, |out| {
                // Times, track 1, reserved, duration, reserved ×2, layer and group, volume.
                u32s(out, &[0, 0, 1, 0, 0, 0, 0, 0, 0]);
                u32s(out, &MATRIX);
                u32s(out, &[width << 16, height << 16]);
            });
            boxed(out, b"mdia", |out| {
                full(out, b"mdhd", 0, 0, |out| {
                    u32s(out, &[0, 0, TIMESCALE, 0]);
                    out.extend_from_slice(&[0x55, 0xc4, 0, 0]); // language "und"
                });
                full(out, b"hdlr", 0, 0, |out| {
                    u32s(out, &[0]);
                    out.extend_from_slice(b"vide");
                    u32s(out, &[0, 0, 0]);
                    out.extend_from_slice(b"VideoHandler\0");
                });
                boxed(out, b"minf", |out| {
                    full(out, b"vmhd", 0, 1, |out| u32s(out, &[0, 0]));
                    boxed(out, b"dinf", |out| {
                        full(out, b"dref", 0, 0, |out| {
                            u32s(out, &[1]);
                            full(out, b"url ", 0, 1, |_| {});
                        });
                    });
                    boxed(out, b"stbl", |out| {
                        full(out, b"stsd", 0, 0, |out| {
                            u32s(out, &[1]);
                            out.extend_from_slice(sample_entry);
                        });
                        full(out, b"stts", 0, 0, |out| u32s(out, &[0]));
                        full(out, b"stsc", 0, 0, |out| u32s(out, &[0]));
                        full(out, b"stsz", 0, 0, |out| u32s(out, &[0, 0]));
                        full(out, b"stco", 0, 0, |out| u32s(out, &[0]));
                    });
                });
            });
        });
        boxed(out, b"mvex", |out| {
            // Track 1, sample description 1, no defaults.
            full(out, b"trex", 0, 0, |out| u32s(out, &[1, 1, 0, 0, 0]));
        });
    });
    out
}

/// Sample flags of a key frame (depends on no other) and of any other frame.
const KEY_FLAGS: u32 = 0x0200_0000;
const OTHER_FLAGS: u32 = 0x0101_0000;

/// One fragment: `moof` for `samples`, starting `decode_time` ticks into the segment, then
/// the `mdat` of `data` (the samples' bytes, in order). `sequence` counts from 1.
pub fn fragment(sequence: u32, decode_time: u64, samples: &[Sample], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(100 + 12 * samples.len() + data.len());
    let mut data_offset_at = 0;
    boxed(&mut out, b"moof", |out| {
        full(out, b"mfhd", 0, 0, |out| u32s(out, &[sequence]));
        boxed(out, b"traf", |out| {
            // default-base-is-moof: data offsets count from the start of this moof.
            full(out, b"tfhd", 0, 0x02_0000, |out| u32s(out, &[1]));
            full(out, b"tfdt", 1, 0, |out| out.extend_from_slice(&decode_time.to_be_bytes()));
            // data offset, then duration, size and flags per sample.
            full(out, b"trun", 0, 0x0701, |out| {
                u32s(out, &[samples.len() as u32]);
                data_offset_at = out.len();
                u32s(out, &[0]);
                for s in samples {
                    u32s(out, &[s.duration, s.size, if s.key { KEY_FLAGS } else { OTHER_FLAGS }]);
                }
            });
        });
    });
    let data_offset = (out.len() + 8) as u32;
    out[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
    boxed(&mut out, b"mdat", |out| out.extend_from_slice(data));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::fragments;
    use std::io::Cursor;

    #[test]
    fn a_segment_is_an_init_part_then_whole_fragments() {
        let entry = [0, 0, 0, 8, b'a', b'v', b'c', b'1'];
        let mut file = init_segment(&entry, 1280, 720);
        let init = file.len() as u64;
        let samples = [Sample { duration: 3000, size: 3, key: true }, Sample { duration: 3000, size: 2, key: false }];
        file.extend(fragment(1, 0, &samples, &[1, 2, 3, 4, 5]));
        file.extend(fragment(2, 6000, &samples[1..], &[6, 7]));
        let len = file.len() as u64;
        let found = fragments::scan(&mut Cursor::new(&file), len).expect("scan");
        assert_eq!((found.init_len, found.fragments, found.complete_len), (init, 2, len));
        // The data offset points at the mdat's payload.
        let moof_len = u32::from_be_bytes(file[init as usize..init as usize + 4].try_into().unwrap()) as usize;
        let payload = init as usize + moof_len + 8;
        assert_eq!(&file[payload..payload + 5], &[1, 2, 3, 4, 5]);
    }
}
