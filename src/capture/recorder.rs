//! A recorder run as its supervisor sees it, and spawning the recording
//! ffmpeg: its pipes, the stream copy for the sampler on fd 3, and the clean
//! way to make it stop. The native recorder (`native/`) is the other kind of run.

use super::native::NativeEvent;
use super::v4l2::V4l2Capture;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// A running recorder.
pub enum Recorder {
    /// A recording ffmpeg and its pipes (boxed: a native run is far smaller).
    Ffmpeg(Box<FfmpegRun>),
    /// A native run and what it says.
    Native(NativeRun),
}

/// A running ffmpeg.
pub struct FfmpegRun {
    /// The process.
    pub child: Child,
    /// Its segment list (`file,start,end` per closed segment).
    pub stdout: ChildStdout,
    /// Its progress and log lines.
    pub stderr: ChildStderr,
    /// What feeds its stdin.
    pub feeder: Feeder,
}

/// A running native recorder.
pub struct NativeRun {
    /// The task; it ends with why.
    pub task: JoinHandle<String>,
    /// What it says.
    pub events: mpsc::Receiver<NativeEvent>,
    /// Stops it.
    pub stop: oneshot::Sender<()>,
}

impl Recorder {
    /// Which recorder this is, as segment rows name it (`native`, `ffmpeg`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ffmpeg(_) => "ffmpeg",
            Self::Native(_) => "native",
        }
    }
}

/// What runs a recorder.
pub enum Process {
    /// A recording ffmpeg.
    Ffmpeg(Child),
    /// A native run; it ends with why.
    Native(JoinHandle<String>),
}

impl Process {
    /// Ends it now (after the stop grace).
    pub fn kill(&mut self) {
        match self {
            Self::Ffmpeg(child) => {
                let _ = child.start_kill();
            }
            Self::Native(task) => task.abort(),
        }
    }

    /// Waits for its end; says how it ended.
    pub async fn wait(self) -> String {
        match self {
            Self::Ffmpeg(mut child) => match child.wait().await {
                Ok(status) => format!("ffmpeg exited ({status})"),
                Err(e) => format!("ffmpeg lost: {e}"),
            },
            Self::Native(task) => task.await.unwrap_or_else(|e| format!("recorder task lost: {e}")),
        }
    }
}

/// What feeds the recorder's stdin, or stops it.
pub enum Feeder {
    /// Nothing but ffmpeg's quit key.
    Quit(ChildStdin),
    /// V4L2 frames.
    Capture(V4l2Capture),
    /// The native run's stop.
    Stop(oneshot::Sender<()>),
}

/// Starts `ffmpeg` with `args`; with `sampled`, its copy of the stream for the sampler comes
/// out of the returned pipe. V4L2 frames from `capture` feed its stdin.
pub fn spawn(
    ffmpeg: &Path,
    args: &[String],
    sampled: bool,
    capture: Option<V4l2Capture>,
) -> Result<(FfmpegRun, Option<pipe::Receiver>), String> {
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
    Ok((FfmpegRun { child, stdout, stderr, feeder }, stream))
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
        Some(Feeder::Stop(stop)) => {
            let _ = stop.send(());
        }
        None => {}
    }
}
