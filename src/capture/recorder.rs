//! Spawning the recording ffmpeg and talking to it: its pipes, the stream
//! copy for the sampler on fd 3, and the clean way to make it stop.

use super::v4l2::V4l2Capture;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

/// A running recording ffmpeg and its pipes.
pub struct Recorder {
    /// The process.
    pub child: Child,
    /// The segment list (`file,start,end` per closed segment).
    pub stdout: ChildStdout,
    /// Progress and log lines.
    pub stderr: ChildStderr,
    /// What feeds its stdin.
    pub feeder: Option<Feeder>,
}

/// What feeds the recorder's stdin.
pub enum Feeder {
    /// Nothing but the quit key.
    Quit(ChildStdin),
    /// V4L2 frames.
    Capture(V4l2Capture),
}

/// Starts `ffmpeg` with `args`; with `sampled`, its copy of the stream for the sampler comes
/// out of the returned pipe. V4L2 frames from `capture` feed its stdin.
pub fn spawn(
    ffmpeg: &Path,
    args: &[String],
    sampled: bool,
    capture: Option<V4l2Capture>,
) -> Result<(Recorder, Option<pipe::Receiver>), String> {
    // The sampler's copy of the stream leaves ffmpeg on fd 3.
    let stream_pipe =
        sampled.then(std::io::pipe).transpose().map_err(|e| format!("cannot make the sampler pipe: {e}"))?;
    let mut command = Command::new(ffmpeg);
    crate::sys::process::dies_with_service(&mut command, stream_pipe.as_ref().map(|(_, writer)| writer.as_raw_fd()));
    let mut child = command
        .args(args)
        .env("TZ", "UTC")
        // stdin carries V4L2 frames, or the `q` that makes ffmpeg close its last segment cleanly.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", ffmpeg.display()))?;
    let (Some(stdout), Some(stderr), Some(stdin)) = (child.stdout.take(), child.stderr.take(), child.stdin.take())
    else {
        return Err("ffmpeg pipes missing".into());
    };
    let stream = match stream_pipe {
        Some((reader, writer)) => {
            drop(writer);
            pipe::Receiver::from_owned_fd(reader.into())
                .map_err(|e| tracing::error!(error = %e, "sampler stream unavailable"))
                .ok()
        }
        None => None,
    };
    let feeder = match capture {
        Some(mut capture) => {
            if let Err(e) = capture.attach(stdin) {
                let _ = child.start_kill();
                return Err(format!("{e:#}"));
            }
            Feeder::Capture(capture)
        }
        None => Feeder::Quit(stdin),
    };
    Ok((Recorder { child, stdout, stderr, feeder: Some(feeder) }, stream))
}

/// Asks ffmpeg to finish: it closes the current segment and lists it, as at the end of its
/// input. (A signal would interrupt its output I/O and leave the last segment unlisted.)
pub async fn finish(feeder: Option<Feeder>) {
    match feeder {
        Some(Feeder::Quit(mut stdin)) => {
            use tokio::io::AsyncWriteExt;
            let _ = stdin.write_all(b"q").await;
            let _ = stdin.flush().await;
        }
        Some(Feeder::Capture(capture)) => capture.stop(),
        None => {}
    }
}
