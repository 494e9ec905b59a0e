//! Fragmented MP4 as the recorder writes it: an init part (`ftyp`, `moov`
//! with a video track and, when the camera sends AAC, an audio track; no samples) and then fragments (`moof` + `mdat`)
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

/// The audio track of a segment: its `mp4a` sample entry (retina builds it from the SDP)
/// and its clock rate, the track's timescale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioTrack {
    /// The `mp4a` box.
    pub sample_entry: Vec<u8>,
    /// Ticks per second (the sampling rate).
    pub rate: u32,
}

/// Track id of the video; the audio, when there is some, is track 2.
const VIDEO_TRACK: u32 = 1;
/// Track id of the audio.
pub const AUDIO_TRACK: u32 = 2;

/// The init part of a segment: `sample_entry` is the video track's `avc1`/`hvc1` box
/// (retina builds it from the stream's parameter sets), `width`×`height` its picture size.
pub fn init_segment(sample_entry: &[u8], width: u32, height: u32, audio: Option<&AudioTrack>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1200 + sample_entry.len());
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
            u32s(out, &[if audio.is_some() { AUDIO_TRACK + 1 } else { VIDEO_TRACK + 1 }]); // next track id
        });
        let video = Track { id: VIDEO_TRACK, timescale: TIMESCALE, sample_entry, size: (width, height) };
        trak(out, &video);
        if let Some(audio) = audio {
            trak(
                out,
                &Track { id: AUDIO_TRACK, timescale: audio.rate, sample_entry: &audio.sample_entry, size: (0, 0) },
            );
        }
        boxed(out, b"mvex", |out| {
            // Each track: sample description 1, no defaults.
            full(out, b"trex", 0, 0, |out| u32s(out, &[VIDEO_TRACK, 1, 0, 0, 0]));
            if audio.is_some() {
                full(out, b"trex", 0, 0, |out| u32s(out, &[AUDIO_TRACK, 1, 0, 0, 0]));
            }
        });
    });
    out
}

/// One track of the init part; a size of 0×0 makes it a sound track.
struct Track<'a> {
    id: u32,
    timescale: u32,
    sample_entry: &'a [u8],
    size: (u32, u32),
}

fn trak(out: &mut Vec<u8>, track: &Track) {
    let sound = track.size == (0, 0);
    boxed(out, b"trak", |out| {
        // Enabled, in the movie.
        full(out, b"tkhd", 0, 3, |out| {
            // Times, track id, reserved, duration, reserved ×2, layer and group, volume.
            u32s(out, &[0, 0, track.id, 0, 0, 0, 0, 0, if sound { 0x0100_0000 } else { 0 }]);
            u32s(out, &MATRIX);
            u32s(out, &[track.size.0 << 16, track.size.1 << 16]);
        });
        boxed(out, b"mdia", |out| {
            full(out, b"mdhd", 0, 0, |out| {
                u32s(out, &[0, 0, track.timescale, 0]);
                out.extend_from_slice(&[0x55, 0xc4, 0, 0]); // language "und"
            });
            full(out, b"hdlr", 0, 0, |out| {
                u32s(out, &[0]);
                out.extend_from_slice(if sound { b"soun" } else { b"vide" });
                u32s(out, &[0, 0, 0]);
                out.extend_from_slice(if sound { b"SoundHandler\0" } else { b"VideoHandler\0" });
            });
            boxed(out, b"minf", |out| {
                if sound {
                    full(out, b"smhd", 0, 0, |out| u32s(out, &[0]));
                } else {
                    full(out, b"vmhd", 0, 1, |out| u32s(out, &[0, 0]));
                }
                boxed(out, b"dinf", |out| {
                    full(out, b"dref", 0, 0, |out| {
                        u32s(out, &[1]);
                        full(out, b"url ", 0, 1, |_| {});
                    });
                });
                boxed(out, b"stbl", |out| {
                    full(out, b"stsd", 0, 0, |out| {
                        u32s(out, &[1]);
                        out.extend_from_slice(track.sample_entry);
                    });
                    full(out, b"stts", 0, 0, |out| u32s(out, &[0]));
                    full(out, b"stsc", 0, 0, |out| u32s(out, &[0]));
                    full(out, b"stsz", 0, 0, |out| u32s(out, &[0, 0]));
                    full(out, b"stco", 0, 0, |out| u32s(out, &[0]));
                });
            });
        });
    });
}

/// Sample flags of a key frame (depends on no other) and of any other frame.
const KEY_FLAGS: u32 = 0x0200_0000;
const OTHER_FLAGS: u32 = 0x0101_0000;

/// The samples of one track in a fragment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Run {
    /// Ticks of the track from the start of the segment to the first sample.
    pub decode_time: u64,
    /// The samples, in order.
    pub samples: Vec<Sample>,
    /// Their bytes, in order.
    pub data: Vec<u8>,
}

/// One fragment: `moof` for the video `samples` and, when there are some, the audio's,
/// then one `mdat` of their bytes (video first). `sequence` counts from 1.
pub fn fragment(sequence: u32, video: &Run, audio: &Run) -> Vec<u8> {
    let runs: Vec<(u32, &Run)> =
        [(VIDEO_TRACK, video), (AUDIO_TRACK, audio)].into_iter().filter(|(_, r)| !r.samples.is_empty()).collect();
    let bytes: usize = runs.iter().map(|(_, r)| r.data.len()).sum();
    let mut out = Vec::with_capacity(200 + 12 * (video.samples.len() + audio.samples.len()) + bytes);
    let mut offsets_at = Vec::new();
    boxed(&mut out, b"moof", |out| {
        full(out, b"mfhd", 0, 0, |out| u32s(out, &[sequence]));
        for (track, run) in &runs {
            boxed(out, b"traf", |out| {
                // default-base-is-moof: data offsets count from the start of this moof.
                full(out, b"tfhd", 0, 0x02_0000, |out| u32s(out, &[*track]));
                full(out, b"tfdt", 1, 0, |out| out.extend_from_slice(&run.decode_time.to_be_bytes()));
                // data offset, then duration, size and flags per sample.
                full(out, b"trun", 0, 0x0701, |out| {
                    u32s(out, &[run.samples.len() as u32]);
                    offsets_at.push(out.len());
                    u32s(out, &[0]);
                    for s in &run.samples {
                        u32s(out, &[s.duration, s.size, if s.key { KEY_FLAGS } else { OTHER_FLAGS }]);
                    }
                });
            });
        }
    });
    let mut data_offset = out.len() + 8;
    for (at, (_, run)) in offsets_at.into_iter().zip(&runs) {
        out[at..at + 4].copy_from_slice(&(data_offset as u32).to_be_bytes());
        data_offset += run.data.len();
    }
    boxed(&mut out, b"mdat", |out| {
        for (_, run) in &runs {
            out.extend_from_slice(&run.data);
        }
    });
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
        let mut file = init_segment(&entry, 1280, 720, None);
        let init = file.len() as u64;
        let samples = [Sample { duration: 3000, size: 3, key: true }, Sample { duration: 3000, size: 2, key: false }];
        let run = |decode_time, samples: &[Sample], data: &[u8]| Run {
            decode_time,
            samples: samples.to_vec(),
            data: data.to_vec(),
        };
        file.extend(fragment(1, &run(0, &samples, &[1, 2, 3, 4, 5]), &Run::default()));
        file.extend(fragment(2, &run(6000, &samples[1..], &[6, 7]), &run(0, &samples[..1], &[8, 9, 10])));
        let len = file.len() as u64;
        let found = fragments::scan(&mut Cursor::new(&file), len).expect("scan");
        assert_eq!((found.init_len, found.fragments, found.complete_len), (init, 2, len));
        // The data offset points at the mdat's payload.
        let moof_len = u32::from_be_bytes(file[init as usize..init as usize + 4].try_into().unwrap()) as usize;
        let payload = init as usize + moof_len + 8;
        assert_eq!(&file[payload..payload + 5], &[1, 2, 3, 4, 5]);
        // The second fragment's audio follows its video in the mdat.
        assert_eq!(&file[file.len() - 5..], &[6, 7, 8, 9, 10]);
    }
}
