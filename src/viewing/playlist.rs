//! HLS playlists over recorded segments. Pure: the segments come from the index.
//!
//! Each segment file is a fragmented MP4 of its own: its init part (`ftyp`,
//! `moov`) is the playlist's `EXT-X-MAP`, its fragments the media segment. Every
//! file's timestamps start at zero, so every file after the first begins a new
//! discontinuity; `EXT-X-PROGRAM-DATE-TIME` on each gives players the wall time,
//! across gaps too.

use crate::recording::index::SegmentRow;
use std::fmt::Write;

/// Most segments one playlist lists; a longer window ends early (ask again from its end).
pub const MAX_PLAYLIST_SEGMENTS: usize = 2_000;

/// The VOD playlist of `segments` (one camera's, by start time), URIs relative to the
/// playlist's own URL (`/cameras/<id>/recorded.m3u8`); `query` (with its `?`, or empty)
/// is appended to each URI, so a share token reaches the files too.
pub fn recorded(segments: &[SegmentRow], query: &str) -> String {
    let longest = segments.iter().map(|s| s.segment.end.0 - s.segment.start.0).max().unwrap_or(1000);
    let mut text = String::with_capacity(256 + segments.len() * 200);
    text.push_str("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let _ = writeln!(text, "#EXT-X-TARGETDURATION:{}", (longest + 999) / 1000);
    text.push_str("#EXT-X-MEDIA-SEQUENCE:0\n");
    for (n, row) in segments.iter().enumerate() {
        let (id, s) = (row.id, &row.segment);
        if n > 0 {
            text.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let _ = writeln!(text, "#EXT-X-MAP:URI=\"segments/{id}/init.mp4{query}\"");
        let _ = writeln!(text, "#EXT-X-PROGRAM-DATE-TIME:{}", s.start.to_rfc3339());
        let _ = writeln!(text, "#EXTINF:{:.3},", (s.end.0 - s.start.0).max(0) as f64 / 1000.0);
        let _ = writeln!(text, "segments/{id}/media.mp4{query}");
    }
    text.push_str("#EXT-X-ENDLIST\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, start: i64, end: i64) -> SegmentRow {
        crate::recording::index::test_row(id, "front", &format!("front/{id}.mp4"), (start, end))
    }

    #[test]
    fn each_segment_has_its_map_wall_time_and_duration() {
        let text =
            recorded(&[row(7, 1_700_000_000_000, 1_700_000_010_000), row(9, 1_700_000_030_000, 1_700_000_039_500)], "");
        let expected = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n\
            #EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n\
            #EXT-X-MAP:URI=\"segments/7/init.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n\
            #EXTINF:10.000,\nsegments/7/media.mp4\n\
            #EXT-X-DISCONTINUITY\n\
            #EXT-X-MAP:URI=\"segments/9/init.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:50.000Z\n\
            #EXTINF:9.500,\nsegments/9/media.mp4\n#EXT-X-ENDLIST\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn an_empty_window_is_an_empty_playlist_and_a_query_reaches_every_uri() {
        assert!(recorded(&[], "").ends_with("#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-ENDLIST\n"));
        let text = recorded(&[row(1, 0, 2000)], "?share=abc");
        assert!(text.contains("segments/1/init.mp4?share=abc\"") && text.contains("segments/1/media.mp4?share=abc\n"));
    }
}
