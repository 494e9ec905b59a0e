//! A camera's `sample_source` (a sub-stream): while a worker wants frames, an
//! ffmpeg copies its video as MPEG-TS to the camera's sampler, whether the
//! camera records or not. The recorder then writes no stream for the sampler.

use super::ffmpeg::{self, RecorderPlan, StderrLine};
use super::recorder::{self, FfmpegRun};
use super::source::Source;
use super::supervisor::{HEALTHY_RUN, RESTART_BACKOFF};
use super::watch::STALL_TIMEOUT;
use crate::sampler::camera::SamplerInput;
use crate::sys::backoff::{Backoff, clock_jitter};
use crate::sys::lines::BoundedLines;
use crate::sys::scrub::scrub;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::BufReader;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Feeds one camera's sampler from its `sample_source`.
pub struct SampleFeed {
    /// Camera id.
    pub camera: String,
    /// The sub-stream, credentials spliced in.
    pub source: Source,
    /// Strings scrubbed from everything logged.
    pub secrets: Vec<String>,
    /// The ffmpeg binary.
    pub ffmpeg: PathBuf,
    /// The board's H.264 encoder (for sub-streams that are not H.264 already).
    pub encoder: String,
    /// The camera's sampler.
    pub sampler: mpsc::Sender<SamplerInput>,
    /// The sampler's planned rate: the sub-stream runs while it is above 0.
    pub frames: watch::Receiver<f64>,
}

/// Why a run ended.
enum Ended {
    /// The service stops the camera.
    Stopped,
    /// No worker wants frames any more.
    Unwanted,
    /// ffmpeg failed or stalled.
    Failed(String),
}

impl SampleFeed {
    /// Runs until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(RESTART_BACKOFF.0, RESTART_BACKOFF.1);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                wanted = self.frames.wait_for(|rate| *rate > 0.0) => if wanted.is_err() { return },
            }
            let started = Instant::now();
            match self.run_once(&mut stop).await {
                Ended::Stopped => return,
                Ended::Unwanted => continue,
                Ended::Failed(why) => {
                    tracing::warn!(camera = %self.camera, error = %scrub(&why, &self.secrets), "sample source failed");
                }
            }
            if started.elapsed() >= HEALTHY_RUN {
                backoff.reset();
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(backoff.next_delay(clock_jitter())) => {}
            }
        }
    }

    /// One ffmpeg run on the sub-stream, until it ends or is not wanted any more.
    async fn run_once(&mut self, stop: &mut watch::Receiver<bool>) -> Ended {
        let args = feed_args(&self.source, &self.encoder, &self.camera);
        tracing::debug!(camera = %self.camera, args = %scrub(&args.join(" "), &self.secrets), "starting sample source");
        let (FfmpegRun { mut child, stderr, feeder, .. }, stream) =
            match recorder::spawn(&self.ffmpeg, &args, true, None) {
                Ok(started) => started,
                Err(why) => return Ended::Failed(why),
            };
        if let Some(stream) = stream {
            let _ = self.sampler.try_send(SamplerInput::Stream(stream));
        }
        let mut log = BoundedLines::new(BufReader::new(stderr));
        let (mut last_progress, mut last_error) = (Instant::now(), None);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let ended = loop {
            tokio::select! {
                line = log.next_line() => match line {
                    Ok(Some(line)) => match ffmpeg::parse_stderr_line(&line) {
                        StderrLine::Progress(key, _) if key == "out_time_us" => last_progress = Instant::now(),
                        StderrLine::Video(codec, width, height) => {
                            let _ = self.sampler.try_send(SamplerInput::Video(codec, width, height));
                        }
                        StderrLine::Error(message) => last_error = Some(message),
                        _ => {}
                    },
                    _ => break Ended::Failed(last_error.unwrap_or_else(|| "ffmpeg exited".into())),
                },
                _ = stop.wait_for(|s| *s) => break Ended::Stopped,
                _ = self.frames.wait_for(|rate| *rate <= 0.0) => break Ended::Unwanted,
                _ = tick.tick() => if last_progress.elapsed() > STALL_TIMEOUT {
                    break Ended::Failed(format!("stalled: no data for {} s", STALL_TIMEOUT.as_secs()));
                },
            }
        };
        recorder::finish(Some(feeder)).await;
        if tokio::time::timeout(Duration::from_secs(2), child.wait()).await.is_err() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        ended
    }
}

/// The ffmpeg arguments that copy (or encode) `source`'s video as MPEG-TS to fd 3.
fn feed_args(source: &Source, encoder: &str, camera: &str) -> Vec<String> {
    ffmpeg::recorder_args(&RecorderPlan {
        camera,
        source,
        v4l2: None,
        segment_s: 2,
        recordings_dir: Path::new(""),
        encoder,
        sample_stream: true,
        segments: false,
        run: "",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sub_stream_is_copied_to_the_sampler_alone() {
        let args = feed_args(&Source::Rtsp("rtsp://h/sub".into()), "libx264", "cam");
        assert!(args.windows(2).any(|w| w == ["-c:v", "copy"]));
        assert!(args.ends_with(&["-bsf:v", "dump_extra", "-f", "mpegts", "pipe:3"].map(String::from)));
        assert!(!args.iter().any(|a| a.contains(".mp4")), "no segment: {args:?}");
    }
}
