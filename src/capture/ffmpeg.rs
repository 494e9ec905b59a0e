//! The recording ffmpeg: its command line, and what its output means.
//!
//! ffmpeg writes the segment list (`file,start,end`, one CSV line the moment
//! a segment closes) on stdout, and its log plus `-progress` blocks on
//! stderr. Both are parsed here as plain text.

use super::source::Source;
use crate::config::schema::{PixelFormat, V4l2Config};
use crate::recording::layout;
use std::path::Path;

/// Everything the recorder command line depends on.
#[derive(Clone, Debug)]
pub struct RecorderPlan<'a> {
    /// Camera id.
    pub camera: &'a str,
    /// Where frames come from (URL with credentials spliced in).
    pub source: &'a Source,
    /// V4L2 format, for `v4l2://` sources (frames arrive on stdin).
    pub v4l2: Option<&'a V4l2Config>,
    /// Segment length in seconds.
    pub segment_s: u64,
    /// Root of all segments.
    pub recordings_dir: &'a Path,
    /// H.264 encoder of the board, for sources that are not H.264 already.
    pub encoder: &'a str,
    /// Also write the video as MPEG-TS to fd 3, for the sampler.
    pub sample_stream: bool,
    /// Write segments; without, only the sampler's stream is written.
    pub segments: bool,
    /// This run's token in the segment names (`layout::run_token`).
    pub run: &'a str,
}

/// The ffmpeg arguments (without the program name) that record `plan` into segments.
pub fn recorder_args(plan: &RecorderPlan<'_>) -> Vec<String> {
    let mut args: Vec<String> =
        ["-hide_banner", "-loglevel", "level+info", "-nostats", "-stats_period", "1", "-progress", "pipe:2"]
            .map(String::from)
            .to_vec();
    let copy = input_args(plan, &mut args);
    args.extend(["-map", "0:v:0"].map(String::from));
    if matches!(plan.source, Source::V4l2(_)) {
        // Frames keep their capture times: no duplicates to fill a rate the camera does not deliver.
        args.extend(["-fps_mode", "passthrough"].map(String::from));
    }
    if copy {
        args.extend(["-c:v", "copy"].map(String::from));
    } else {
        args.extend(encoder_args(plan.encoder, plan.segment_s));
        if plan.sample_stream && plan.segments {
            // Behind tee the encoder cannot tell that MP4 needs its parameter sets out of band.
            args.extend(["-flags:v", "+global_header"].map(String::from));
        }
    }
    output_args(plan, &mut args);
    args
}

/// Appends the input of `plan`'s source; `true` when its video is H.264 or H.265 already
/// and is copied.
fn input_args(plan: &RecorderPlan<'_>, args: &mut Vec<String>) -> bool {
    match plan.source {
        Source::Rtsp(_) | Source::Http(_) => {
            args.extend(network_input(plan.source).unwrap_or_default());
            // RTSP carries H.264/H.265 already; HTTP (MJPEG and the like) is encoded.
            matches!(plan.source, Source::Rtsp(_))
        }
        Source::Lavfi(graph) => {
            args.extend(["-re", "-f", "lavfi", "-i", graph].map(String::from));
            false
        }
        Source::V4l2(_) => {
            let format = plan.v4l2.map(|v| v.format).unwrap_or_default();
            // The rate the device agreed to: without it the demuxers assume 25 fps.
            let fps = plan.v4l2.map_or(15, |v| v.fps);
            args.extend(["-use_wallclock_as_timestamps", "1", "-framerate"].map(String::from));
            args.push(fps.to_string());
            match format {
                PixelFormat::Mjpg => args.extend(["-f", "mjpeg"].map(String::from)),
                PixelFormat::H264 => args.extend(["-f", "h264"].map(String::from)),
                PixelFormat::Yuyv => {
                    let (w, h) = plan.v4l2.map_or((640, 480), |v| (v.width, v.height));
                    args.extend(["-f", "rawvideo", "-pix_fmt", "yuyv422", "-video_size"].map(String::from));
                    args.push(format!("{w}x{h}"));
                }
            }
            args.extend(["-i", "pipe:0"].map(String::from));
            format == PixelFormat::H264
        }
    }
}

/// The input of a network source (RTSP over TCP, HTTP), 10 s I/O timeout; `None` for others.
pub fn network_input(source: &Source) -> Option<Vec<String>> {
    match source {
        Source::Rtsp(url) => {
            Some(["-rtsp_transport", "tcp", "-timeout", "10000000", "-i", url].map(String::from).to_vec())
        }
        Source::Http(url) => Some(["-rw_timeout", "10000000", "-i", url].map(String::from).to_vec()),
        Source::Lavfi(_) | Source::V4l2(_) => None,
    }
}

/// Appends the segment muxer, behind `tee` with the sampler's MPEG-TS when sampled; the
/// MPEG-TS alone when the camera does not record.
fn output_args(plan: &RecorderPlan<'_>, args: &mut Vec<String>) {
    if !plan.segments {
        args.extend(["-bsf:v", "dump_extra", "-f", "mpegts", "pipe:3"].map(String::from));
        return;
    }
    let pattern =
        plan.recordings_dir.join(layout::segment_pattern(plan.camera, plan.run)).to_string_lossy().into_owned();
    let segment_time = plan.segment_s.to_string();
    let segment: [(&str, &str); 7] = [
        ("segment_time", &segment_time),
        ("segment_format", "mp4"),
        // Fragmented MP4 in 1 s fragments, each written out at once: a segment cut by
        // kill -9 or a power loss still plays up to its last second.
        (
            "segment_format_options",
            "movflags=+frag_keyframe+empty_moov+default_base_moof:frag_duration=1000000:flush_packets=1",
        ),
        ("reset_timestamps", "1"),
        ("strftime", "1"),
        ("segment_list", "pipe:1"),
        ("segment_list_type", "csv"),
    ];
    if plan.sample_stream {
        // One encode or copy, two muxers: the segments, and MPEG-TS on fd 3 for the sampler's
        // decoder (which runs only while workers take frames). `onfail=ignore` keeps recording
        // if the sampler side goes away.
        args.extend(["-f", "tee"].map(String::from));
        let options: Vec<String> =
            segment.iter().map(|(k, v)| format!("{k}={}", tee_escape(&option_escape(v)))).collect();
        // dump_extra repeats the parameter sets at keyframes: a decoder may join mid-stream.
        args.push(format!(
            "[f=segment:{}]{}|[f=mpegts:bsfs/v=dump_extra:onfail=ignore]{}",
            options.join(":"),
            tee_escape(&pattern),
            tee_escape("pipe:3")
        ));
    } else {
        args.extend(["-f", "segment"].map(String::from));
        for (k, v) in segment {
            args.push(format!("-{k}"));
            args.push(v.to_string());
        }
        args.push(pattern);
    }
}

/// Escapes a value for a muxer's own `key=value:key=value` option parser.
fn option_escape(value: &str) -> String {
    escape(value, &[':'])
}

/// Escapes text for the tee muxer's slave list (`[options]file|[options]file`).
fn tee_escape(text: &str) -> String {
    escape(text, &[':', '|', '[', ']'])
}

fn escape(text: &str, special: &[char]) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\\' || special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Encoder options: a keyframe every 2 s (1 s for odd segment lengths), so every
/// segment boundary falls on a keyframe and segments last `segment_s`.
pub fn encoder_args(encoder: &str, segment_s: u64) -> Vec<String> {
    let every = if segment_s.is_multiple_of(2) { 2 } else { 1 };
    let mut args = vec!["-c:v".to_string(), encoder.to_string()];
    if encoder == "libx264" {
        args.extend(["-preset", "veryfast", "-tune", "zerolatency"].map(String::from));
    }
    args.extend(["-pix_fmt", "yuv420p", "-force_key_frames"].map(String::from));
    args.push(format!("expr:gte(t,n_forced*{every})"));
    args
}

/// One line of ffmpeg's segment list: a segment just closed.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedSegment {
    /// File name (without directory).
    pub file: String,
    /// Start in the output timeline, seconds.
    pub start_s: f64,
    /// End in the output timeline, seconds.
    pub end_s: f64,
}

/// Parses `file,start,end`.
pub fn parse_segment_list_line(line: &str) -> Option<ListedSegment> {
    let mut fields = line.trim().rsplitn(3, ',');
    let end_s: f64 = fields.next()?.parse().ok()?;
    let start_s: f64 = fields.next()?.parse().ok()?;
    let file = fields.next()?.trim_matches('"').to_string();
    (!file.is_empty() && start_s.is_finite() && end_s >= start_s).then_some(ListedSegment { file, start_s, end_s })
}

/// What one stderr line of the recorder says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StderrLine {
    /// `key=value` of a `-progress` block.
    Progress(String, String),
    /// The segment muxer opened this file.
    Opening(String),
    /// A video stream description: codec, width, height.
    Video(String, u32, u32),
    /// An error or fatal message (level tags removed).
    Error(String),
    /// A warning (level tags removed).
    Warning(String),
    /// Anything else.
    Other,
}

/// Classifies one stderr line of an ffmpeg run with `-loglevel level+info -progress pipe:2`.
pub fn parse_stderr_line(line: &str) -> StderrLine {
    let line = line.trim_end();
    if !line.starts_with('[') {
        if let Some((key, value)) = line.split_once('=')
            && !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return StderrLine::Progress(key.to_string(), value.trim().to_string());
        }
        return StderrLine::Other;
    }
    let (level, message) = split_level(line);
    match level {
        "error" | "fatal" | "panic" => return StderrLine::Error(message.to_string()),
        "warning" => return StderrLine::Warning(message.to_string()),
        _ => {}
    }
    if let Some(rest) = message.strip_prefix("Opening '")
        && let Some(path) = rest.strip_suffix("' for writing")
        && path.ends_with(".mp4")
    {
        return StderrLine::Opening(path.to_string());
    }
    if message.trim_start().starts_with("Stream #")
        && let Some(video) = message.split_once("Video: ").map(|(_, v)| v)
    {
        let codec: String = video.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let size = video
            .split([',', ' '])
            .find_map(|token| {
                let (w, h) = token.split_once('x')?;
                Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?))
            })
            .filter(|(w, h)| *w > 0 && *h > 0);
        if let (false, Some((w, h))) = (codec.is_empty(), size) {
            return StderrLine::Video(codec, w, h);
        }
    }
    StderrLine::Other
}

/// Splits `[ctx @ 0x…] [level] message` or `[level] message` into level and message.
fn split_level(line: &str) -> (&str, &str) {
    let mut rest = line;
    let mut level = "";
    while let Some(inner) = rest.strip_prefix('[') {
        let Some((tag, after)) = inner.split_once(']') else { break };
        if !tag.contains(" @ ") {
            level = tag;
        }
        rest = after.trim_start();
    }
    (level, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn plan_args(source: Source, v4l2: Option<V4l2Config>) -> Vec<String> {
        let dir = PathBuf::from("/rec");
        recorder_args(&RecorderPlan {
            camera: "cam",
            source: &source,
            v4l2: v4l2.as_ref(),
            segment_s: 60,
            recordings_dir: &dir,
            encoder: "libx264",
            sample_stream: false,
            segments: true,
            run: "r1",
        })
    }

    fn has(args: &[String], pair: &[&str]) -> bool {
        args.windows(pair.len()).any(|w| w.iter().zip(pair).all(|(a, b)| a == b))
    }

    #[test]
    fn rtsp_is_copied_over_tcp_into_fragmented_segments() {
        let args = plan_args(Source::Rtsp("rtsp://h/s".into()), None);
        assert!(has(&args, &["-rtsp_transport", "tcp"]));
        assert!(has(&args, &["-c:v", "copy"]));
        assert!(has(&args, &["-segment_time", "60"]));
        assert!(has(&args, &["-segment_list", "pipe:1", "-segment_list_type", "csv"]));
        assert!(args.iter().any(|a| a.contains("frag_keyframe")));
        assert_eq!(args.last().map(String::as_str), Some("/rec/cam/%Y-%m-%d/%H%M%S-r1.mp4"));
    }

    #[test]
    fn synthetic_and_raw_sources_are_encoded_by_the_board_encoder() {
        let args = plan_args(Source::Lavfi("testsrc".into()), None);
        assert!(has(&args, &["-re", "-f", "lavfi", "-i", "testsrc"]));
        assert!(has(&args, &["-c:v", "libx264"]));
        let v4l2 = V4l2Config { width: 640, height: 480, fps: 15, format: PixelFormat::Yuyv };
        let args = plan_args(Source::V4l2("/dev/video0".into()), Some(v4l2));
        assert!(has(&args, &["-f", "rawvideo", "-pix_fmt", "yuyv422", "-video_size", "640x480", "-i", "pipe:0"]));
        assert!(has(&args, &["-framerate", "15"]) && has(&args, &["-fps_mode", "passthrough"]));
        let h264 = V4l2Config { width: 640, height: 480, fps: 15, format: PixelFormat::H264 };
        assert!(has(&plan_args(Source::V4l2("/dev/video0".into()), Some(h264)), &["-c:v", "copy"]));
    }

    #[test]
    fn a_sampled_camera_writes_segments_and_a_stream_through_tee() {
        let dir = PathBuf::from("/rec");
        let source = Source::Rtsp("rtsp://h/s".into());
        let args = recorder_args(&RecorderPlan {
            camera: "cam",
            source: &source,
            v4l2: None,
            segment_s: 4,
            recordings_dir: &dir,
            encoder: "libx264",
            sample_stream: true,
            segments: true,
            run: "r1",
        });
        assert!(has(&args, &["-f", "tee"]));
        let slaves = args.last().expect("slaves");
        assert!(slaves.starts_with("[f=segment:segment_time=4:segment_format=mp4:"), "{slaves}");
        assert!(slaves.contains(r"default_base_moof\\\:frag_duration=1000000\\\:flush_packets=1"), "{slaves}");
        assert!(slaves.contains(r"segment_list=pipe\\\:1:"), "{slaves}");
        assert!(
            slaves.ends_with(r"]/rec/cam/%Y-%m-%d/%H%M%S-r1.mp4|[f=mpegts:bsfs/v=dump_extra:onfail=ignore]pipe\:3"),
            "{slaves}"
        );
    }

    #[test]
    fn parses_segment_list_lines() {
        assert_eq!(
            parse_segment_list_line("144429.mp4,0.000000,2.000000\n"),
            Some(ListedSegment { file: "144429.mp4".into(), start_s: 0.0, end_s: 2.0 })
        );
        assert_eq!(parse_segment_list_line("garbage"), None);
        assert_eq!(parse_segment_list_line("a.mp4,3,2"), None);
    }

    #[test]
    fn classifies_stderr_lines() {
        assert_eq!(
            parse_stderr_line("out_time_us=2000098"),
            StderrLine::Progress("out_time_us".into(), "2000098".into())
        );
        assert_eq!(
            parse_stderr_line("[segment @ 0x5631] [info] Opening '/rec/cam/2026-11-24/144431.mp4' for writing"),
            StderrLine::Opening("/rec/cam/2026-11-24/144431.mp4".into())
        );
        assert_eq!(parse_stderr_line("[segment @ 0x5631] [info] Opening 'pipe:1' for writing"), StderrLine::Other);
        assert_eq!(
            parse_stderr_line(
                "[info]   Stream #0:0: Video: h264, yuv420p(progressive), 320x240 [SAR 1:1 DAR 4:3], q=2-31"
            ),
            StderrLine::Video("h264".into(), 320, 240)
        );
        assert_eq!(
            parse_stderr_line(
                "[info]   Stream #0:0: Video: h264 (High), yuv420p(tv, bt709, progressive), 1280x720, 15 fps"
            ),
            StderrLine::Video("h264".into(), 1280, 720)
        );
        assert_eq!(
            parse_stderr_line("[tcp @ 0x55] [error] Connection to tcp://10.0.0.9:554 failed: Connection refused"),
            StderrLine::Error("Connection to tcp://10.0.0.9:554 failed: Connection refused".into())
        );
        assert_eq!(parse_stderr_line("[warning] something odd"), StderrLine::Warning("something odd".into()));
        assert_eq!(parse_stderr_line("[info] Stream mapping:"), StderrLine::Other);
    }
}
