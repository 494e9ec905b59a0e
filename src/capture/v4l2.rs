//! USB/CSI cameras through V4L2 (the `v4l` crate, mmap streaming). A capture
//! thread negotiates the configured format, then writes every frame to the
//! recording ffmpeg's stdin; ffmpeg timestamps them by arrival.

use crate::config::schema::{CameraConfig, PixelFormat, V4l2Config};
use anyhow::{Context, Result, anyhow, bail};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;
use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

/// mmap buffers queued with the driver.
const BUFFERS: u32 = 4;

/// A running capture thread.
pub struct V4l2Capture {
    stop: Arc<AtomicBool>,
    sink: Option<mpsc::Sender<std::fs::File>>,
    thread: Option<JoinHandle<()>>,
    /// The format the device agreed to.
    pub negotiated: V4l2Config,
}

fn fourcc(format: PixelFormat) -> FourCC {
    FourCC::new(match format {
        PixelFormat::Mjpg => b"MJPG",
        PixelFormat::Yuyv => b"YUYV",
        PixelFormat::H264 => b"H264",
    })
}

fn pixel_format(code: FourCC) -> Option<PixelFormat> {
    match &code.repr {
        b"MJPG" => Some(PixelFormat::Mjpg),
        b"YUYV" => Some(PixelFormat::Yuyv),
        b"H264" => Some(PixelFormat::H264),
        _ => None,
    }
}

/// Opens `device`, negotiates `camera`'s `[camera.v4l2]` format and starts the capture
/// thread, which waits for `attach` before streaming.
pub async fn open(camera: &CameraConfig, device: &str) -> Result<V4l2Capture> {
    let wanted =
        camera.v4l2.clone().unwrap_or(V4l2Config { width: 1280, height: 720, fps: 15, format: PixelFormat::Mjpg });
    let stop = Arc::new(AtomicBool::new(false));
    let (sink_tx, sink_rx) = mpsc::channel::<std::fs::File>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (device, camera_id, thread_stop) = (device.to_string(), camera.id.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name(format!("v4l2-{camera_id}"))
        .spawn(move || capture_thread(&device, &camera_id, &wanted, ready_tx, &sink_rx, &thread_stop))
        .context("starting the capture thread")?;
    let negotiated = ready_rx.await.map_err(|_| anyhow!("the capture thread ended"))??;
    Ok(V4l2Capture { stop, sink: Some(sink_tx), thread: Some(thread), negotiated })
}

impl V4l2Capture {
    /// Starts streaming frames into `stdin` (the recording ffmpeg's).
    pub fn attach(&mut self, stdin: tokio::process::ChildStdin) -> Result<()> {
        let fd: OwnedFd = stdin.into_owned_fd().context("taking ffmpeg's stdin")?;
        // tokio made the pipe non-blocking; the capture thread wants plain blocking writes.
        // SAFETY: fcntl on an fd we own, no memory is touched.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
        let sink = self.sink.take().ok_or_else(|| anyhow!("already attached"))?;
        sink.send(std::fs::File::from(fd)).map_err(|_| anyhow!("the capture thread ended"))
    }

    /// Stops capturing; ffmpeg sees the end of its input and closes its last segment.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.sink.take();
        if let Some(thread) = self.thread.take() {
            // The thread notices within one frame or the 2 s read timeout.
            std::thread::spawn(move || {
                let _ = thread.join();
            });
        }
    }
}

fn negotiate(dev: &Device, wanted: &V4l2Config) -> Result<V4l2Config> {
    let mut format = dev.format().context("reading the current format")?;
    format.width = wanted.width;
    format.height = wanted.height;
    format.fourcc = fourcc(wanted.format);
    let format = dev.set_format(&format).context("setting the format")?;
    let Some(pixel) = pixel_format(format.fourcc) else {
        bail!("the device offers {} instead of {:?}; use MJPG, YUYV or H264", format.fourcc, wanted.format);
    };
    let params = dev.set_params(&v4l::video::capture::Parameters::with_fps(wanted.fps));
    let fps = match params {
        Ok(p) if p.interval.numerator > 0 => p.interval.denominator / p.interval.numerator,
        _ => wanted.fps,
    };
    Ok(V4l2Config { width: format.width, height: format.height, fps, format: pixel })
}

fn capture_thread(
    device: &str,
    camera: &str,
    wanted: &V4l2Config,
    ready: tokio::sync::oneshot::Sender<Result<V4l2Config>>,
    sink: &mpsc::Receiver<std::fs::File>,
    stop: &AtomicBool,
) {
    let opened = Device::with_path(device).with_context(|| format!("opening {device}"));
    let negotiated = opened.and_then(|dev| negotiate(&dev, wanted).map(|n| (dev, n)));
    let dev = match negotiated {
        Ok((dev, negotiated)) => {
            tracing::info!(
                camera,
                device,
                width = negotiated.width,
                height = negotiated.height,
                fps = negotiated.fps,
                format = ?negotiated.format,
                "v4l2 format negotiated"
            );
            let _ = ready.send(Ok(negotiated));
            dev
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let Ok(mut out) = sink.recv() else { return };
    if let Err(e) = stream(&dev, &mut out, stop)
        && !stop.load(Ordering::Relaxed)
    {
        tracing::warn!(camera, device, error = %format!("{e:#}"), "v4l2 capture ended");
    }
}

fn stream(dev: &Device, out: &mut std::fs::File, stop: &AtomicBool) -> Result<()> {
    let mut stream = Stream::with_buffers(dev, Type::VideoCapture, BUFFERS).context("mapping capture buffers")?;
    stream.set_timeout(Duration::from_secs(2));
    while !stop.load(Ordering::Relaxed) {
        let (buffer, meta) = match stream.next() {
            Ok(frame) => frame,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => return Err(e).context("dequeuing a frame"),
        };
        let used = (meta.bytesused as usize).min(buffer.len());
        out.write_all(&buffer[..used]).context("writing a frame to ffmpeg")?;
    }
    Ok(())
}
