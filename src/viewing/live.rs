//! Live view from the segment being written: its complete fragments as HLS byte
//! ranges of the file, its init part as `EXT-X-MAP`, the previous file's last
//! fragments before a discontinuity. Media sequence numbers must go on across
//! files for a player following the playlist, so each camera's last two files are
//! remembered with the sequence number of their first fragment.

use super::fmp4;
use crate::recording::fragments::{self, TopBox};
use crate::wallclock::UnixMs;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Fragments a live playlist lists: about 6 s of 1 s fragments.
const WINDOW: usize = 6;
/// Largest `moov` or `moof` read to time fragments.
const MAX_HEADER_BOX: u64 = 1 << 20;

/// A file a camera wrote or writes, as live playlists number it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveFile {
    /// The file.
    pub path: PathBuf,
    /// Media sequence number of its first fragment.
    pub first_seq: u64,
    /// Discontinuity sequence number of its fragments.
    pub discontinuity: u64,
}

impl LiveFile {
    /// The name its URI carries.
    pub fn name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// The last two files of each camera.
#[derive(Default)]
pub struct LiveFiles(Mutex<HashMap<String, VecDeque<LiveFile>>>);

impl LiveFiles {
    /// `camera`'s remembered files.
    pub fn of(&self, camera: &str) -> Vec<LiveFile> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(camera)
            .map(|f| f.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Remembers that `camera` writes `current` now; `fragments_before` is how many fragments
    /// the file it wrote before holds (closed now). Returns the files to list.
    pub fn follow(&self, camera: &str, current: &Path, fragments_before: u64) -> Vec<LiveFile> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let files = all.entry(camera.to_string()).or_default();
        if files.back().is_none_or(|f| f.path != current) {
            let (first_seq, discontinuity) = match files.back() {
                Some(last) => (last.first_seq + fragments_before, last.discontinuity + 1),
                None => (0, 0),
            };
            files.push_back(LiveFile { path: current.to_path_buf(), first_seq, discontinuity });
            while files.len() > 2 {
                files.pop_front();
            }
        }
        files.iter().cloned().collect()
    }

    /// The remembered file of `camera` called `name`.
    pub fn find(&self, camera: &str, name: &str) -> Option<PathBuf> {
        self.of(camera).into_iter().find(|f| f.name() == name).map(|f| f.path)
    }
}

/// One fragment of a file: its bytes and its length in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Fragment {
    /// Offset in the file.
    pub offset: u64,
    /// `moof` and `mdat` together.
    pub len: u64,
    /// Seconds.
    pub seconds: f64,
}

/// What a live playlist needs of a file: its init part and its complete fragments.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Bytes of the init part.
    pub init_len: u64,
    /// Complete fragments, in order.
    pub fragments: Vec<Fragment>,
    /// When the file was last written: the recorder writes a fragment whole once it is
    /// complete, so about the wall time at the end of the last one.
    pub written: UnixMs,
}

impl Layout {
    /// The wall time each fragment starts at, counted back from `written`.
    pub fn starts(&self) -> Vec<UnixMs> {
        let mut end = self.written.0;
        let mut starts: Vec<UnixMs> = self
            .fragments
            .iter()
            .rev()
            .map(|f| {
                end -= (f.seconds * 1000.0).round() as i64;
                UnixMs(end)
            })
            .collect();
        starts.reverse();
        starts
    }
}

/// Reads the layout of the file at `path` as it is now (it may still grow).
pub fn layout(path: &Path) -> std::io::Result<Layout> {
    let mut file = std::fs::File::open(path)?;
    let metadata = file.metadata()?;
    let len = metadata.len();
    let since_epoch = metadata.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let written = since_epoch.map_or_else(UnixMs::now, |d| UnixMs(d.as_millis() as i64));
    let boxes = fragments::top_level_boxes(&mut file, len)?;
    let found = fragments::summarize(&boxes);
    let mut read_box = |b: &TopBox| -> std::io::Result<Vec<u8>> {
        let mut bytes = vec![0; b.size.min(MAX_HEADER_BOX) as usize];
        file.seek(SeekFrom::Start(b.offset))?;
        file.read_exact(&mut bytes)?;
        Ok(bytes)
    };
    let timescale = match boxes.iter().find(|b| &b.kind == b"moov") {
        Some(moov) => fmp4::timescale(&read_box(moov)?),
        None => None,
    };
    let mut starts = Vec::new();
    for pair in boxes.windows(2).filter(|p| &p[0].kind == b"moof" && &p[1].kind == b"mdat") {
        let end = pair[1].offset + pair[1].size;
        if end <= found.complete_len {
            starts.push((pair[0].offset, end - pair[0].offset, fmp4::decode_time(&read_box(&pair[0])?)));
        }
    }
    let times: Vec<Option<u64>> = starts.iter().map(|(_, _, t)| *t).collect();
    let seconds = fmp4::durations(&times, timescale, 1.0);
    let fragments = starts
        .iter()
        .zip(seconds)
        .map(|((offset, len, _), seconds)| Fragment { offset: *offset, len: *len, seconds })
        .collect();
    Ok(Layout { init_len: found.init_len, fragments, written })
}

/// The live playlist of `files` (oldest first) and their layouts: the last `WINDOW`
/// fragments, URIs relative to `/cameras/<id>/live.m3u8`.
pub fn playlist(files: &[(LiveFile, Layout)]) -> String {
    let mut listed: Vec<(&LiveFile, &Layout, usize, UnixMs)> = Vec::new();
    for (file, layout) in files {
        listed.extend(layout.starts().into_iter().enumerate().map(|(i, start)| (file, layout, i, start)));
    }
    let listed = &listed[listed.len().saturating_sub(WINDOW)..];
    let longest = listed.iter().map(|(_, l, i, _)| l.fragments[*i].seconds).fold(1.0, f64::max);
    let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:7\n");
    let _ = writeln!(text, "#EXT-X-TARGETDURATION:{}", longest.ceil() as u64);
    let (first_seq, first_discontinuity) =
        listed.first().map_or((0, 0), |(f, _, i, _)| (f.first_seq + *i as u64, f.discontinuity));
    let _ = writeln!(text, "#EXT-X-MEDIA-SEQUENCE:{first_seq}\n#EXT-X-DISCONTINUITY-SEQUENCE:{first_discontinuity}");
    let mut current: Option<&Path> = None;
    for (file, layout, i, start) in listed {
        let name = file.name();
        if current != Some(file.path.as_path()) {
            if current.is_some() {
                text.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = writeln!(text, "#EXT-X-MAP:URI=\"live/{name}\",BYTERANGE=\"{}@0\"", layout.init_len);
            current = Some(&file.path);
        }
        let fragment = &layout.fragments[*i];
        let _ = writeln!(text, "#EXT-X-PROGRAM-DATE-TIME:{}", start.to_rfc3339());
        let _ = writeln!(
            text,
            "#EXTINF:{:.3},\n#EXT-X-BYTERANGE:{}@{}\nlive/{name}",
            fragment.seconds, fragment.len, fragment.offset
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(fragments: usize) -> Layout {
        let fragments =
            (0..fragments as u64).map(|i| Fragment { offset: 100 + i * 50, len: 50, seconds: 1.0 }).collect();
        Layout { init_len: 100, fragments, written: UnixMs(1_700_000_010_000) }
    }

    #[test]
    fn sequence_numbers_go_on_across_files() {
        let files = LiveFiles::default();
        let first = files.follow("front", Path::new("/r/a.mp4"), 0);
        assert_eq!(first[0].first_seq, 0);
        assert_eq!(files.follow("front", Path::new("/r/a.mp4"), 99), first, "the same file: nothing new");
        let second = files.follow("front", Path::new("/r/b.mp4"), 10);
        assert_eq!((second[1].first_seq, second[1].discontinuity), (10, 1));
        let third = files.follow("front", Path::new("/r/c.mp4"), 10);
        assert_eq!(third.len(), 2, "two files remembered");
        assert_eq!((third[1].first_seq, third[1].discontinuity), (20, 2));
        assert_eq!(files.find("front", "b.mp4"), Some(PathBuf::from("/r/b.mp4")));
        assert_eq!(files.find("front", "a.mp4"), None, "forgotten");
        assert_eq!(files.find("back", "b.mp4"), None, "another camera's");
    }

    #[test]
    fn the_playlist_lists_the_last_fragments_with_a_discontinuity_between_files() {
        let a = LiveFile { path: "/r/a.mp4".into(), first_seq: 0, discontinuity: 0 };
        let b = LiveFile { path: "/r/b.mp4".into(), first_seq: 10, discontinuity: 1 };
        let text = playlist(&[(a, layout(10)), (b, layout(2))]);
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:6\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n"), "{text}");
        assert_eq!(text.matches("#EXTINF").count(), WINDOW);
        let a = "#EXT-X-MAP:URI=\"live/a.mp4\",BYTERANGE=\"100@0\"\n\
            #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:26.000Z\n#EXTINF:1.000,\n#EXT-X-BYTERANGE:50@400\nlive/a.mp4\n";
        assert!(text.contains(a), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"live/b.mp4\",BYTERANGE=\"100@0\"\n"), "{text}");
        assert!(!text.contains("ENDLIST"), "live");
    }

    #[test]
    fn a_file_without_fragments_yet_lists_nothing_of_itself() {
        let a = LiveFile { path: "/r/a.mp4".into(), first_seq: 0, discontinuity: 0 };
        let text = playlist(&[(a, layout(0))]);
        assert!(text.ends_with("#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n"), "{text}");
    }
}
