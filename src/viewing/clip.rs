//! One MP4 of a window, streamed as ffmpeg writes it: the window's segments joined
//! by ffmpeg's concat demuxer, the first and last cut to the window (`-c copy`, so
//! a cut starts at the key frame before it), fragmented so it streams. The
//! segments stay read-locked, and ffmpeg is killed if the viewer goes away.

use super::media::ReadBody;
use super::routes::{App, Reply, internal, set, text};
use crate::backup::export::cut_of;
use crate::recording::index::{self, SegmentRow};
use crate::wallclock::UnixMs;
use http_body_util::BodyExt;
use hyper::header;
use hyper::{Response, StatusCode};
use std::fmt::Write;
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// Longest clip.
pub const MAX_CLIP_MS: i64 = 3_600_000;
/// How long ffmpeg may take to give a clip's first bytes.
const FIRST_BYTES: std::time::Duration = std::time::Duration::from_secs(30);

/// The ffconcat list of `rows` cut to `[from, to)`; paths under `recordings_dir`.
pub fn concat_list(rows: &[SegmentRow], recordings_dir: &Path, (from, to): (UnixMs, UnixMs)) -> String {
    let seconds = |ms: i64| format!("{}.{:03}", ms / 1000, ms % 1000);
    let mut list = String::from("ffconcat version 1.0\n");
    for row in rows {
        let s = &row.segment;
        let path = recordings_dir.join(&s.path).to_string_lossy().replace('\'', "'\\''");
        // `file:` because the list itself comes through a pipe, against which a bare path
        // would be resolved.
        let _ = writeln!(list, "file 'file:{path}'");
        if let Some((offset, duration)) = cut_of(s.start, s.end, from, to) {
            let _ = writeln!(list, "inpoint {}\noutpoint {}", seconds(offset), seconds(offset + duration));
        }
    }
    list
}

/// `GET /cameras/<id>/clip.mp4` of `[from, to)`.
pub async fn clip(app: &App, camera: &str, (from, to): (UnixMs, UnixMs)) -> Reply {
    if to.0 - from.0 > MAX_CLIP_MS {
        return text(StatusCode::BAD_REQUEST, "a clip is at most one hour");
    }
    let Ok(slot) = app.viewers.clone().try_acquire_owned() else { return super::footage::busy() };
    let id = camera.to_string();
    let rows = match app.store.call(move |conn| index::camera_window(conn, &id, from, to, 1_000)).await {
        Ok(rows) if rows.is_empty() => return text(StatusCode::NOT_FOUND, "nothing recorded in this window"),
        Ok(rows) => rows,
        Err(e) => return internal(&e),
    };
    let held = app.reads.hold(&rows.iter().map(|r| r.id).collect::<Vec<_>>());
    let recordings_dir = app.config.borrow().recordings_dir.clone();
    let list = concat_list(&rows, &recordings_dir, (from, to));
    let spawned = tokio::process::Command::new(&app.ffmpeg)
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-protocol_whitelist", "file,pipe"])
        .args(["-f", "concat", "-safe", "0", "-i", "pipe:0"])
        .args(["-map", "0:v:0", "-map", "0:a?", "-c", "copy"])
        .args(["-movflags", "+frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", "pipe:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return internal(&anyhow::Error::from(e).context("starting ffmpeg for a clip")),
    };
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return internal(&anyhow::anyhow!("ffmpeg has no pipes"));
    };
    // The list is a few KiB, well within a pipe's buffer: written at once, then closed.
    if let Err(e) = stdin.write_all(list.as_bytes()).await {
        return internal(&anyhow::Error::from(e).context("writing the clip's list to ffmpeg"));
    }
    drop(stdin);
    let mut stdout = tokio::io::BufReader::new(stdout);
    // The status goes out with the first bytes: a clip ffmpeg cannot make is an error with
    // its reason, not an empty 200.
    let failed = match tokio::time::timeout(FIRST_BYTES, stdout.fill_buf()).await {
        Ok(Ok(first)) if !first.is_empty() => None,
        Ok(Ok(_)) => Some(first_line(&mut stderr).await),
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("ffmpeg gave nothing within {} s", FIRST_BYTES.as_secs())),
    };
    if let Some(why) = failed {
        tracing::warn!(camera = %camera, error = %why, "a clip could not be made");
        // The viewer is told why, without where the recordings are kept.
        let why = why.replace(&format!("{}/", recordings_dir.display()), "");
        return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("the clip could not be made: {why}"));
    }
    // What ffmpeg says from now on is drained, so it never blocks on a full pipe.
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
    });
    let body = ReadBody::to_end(stdout, Box::new((held, slot, child)));
    let mut reply = Response::new(body.boxed());
    *reply.status_mut() = StatusCode::OK;
    set(&mut reply, header::CONTENT_TYPE, "video/mp4");
    let name = format!("{camera}-{}.mp4", from.to_rfc3339().replace(':', ""));
    set(&mut reply, header::CONTENT_DISPOSITION, &format!("attachment; filename=\"{name}\""));
    reply
}

/// The first line ffmpeg said on `stderr` (it has exited), at most 1 KiB of it.
async fn first_line(stderr: &mut tokio::process::ChildStderr) -> String {
    let mut said = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stderr.take(1024).read_to_end(&mut said)).await;
    let said = String::from_utf8_lossy(&said);
    said.lines().next().unwrap_or("ffmpeg exited without a word").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, start: i64, end: i64) -> SegmentRow {
        crate::recording::index::test_row(0, "c", path, (start, end))
    }

    #[test]
    fn the_edges_are_cut_to_the_window_and_the_middle_is_whole() {
        let rows = [row("c/a.mp4", 0, 10_000), row("c/b.mp4", 10_000, 20_000), row("c/it's.mp4", 20_000, 30_000)];
        let list = concat_list(&rows, Path::new("/rec"), (UnixMs(4_500), UnixMs(25_000)));
        assert_eq!(
            list,
            "ffconcat version 1.0\nfile 'file:/rec/c/a.mp4'\ninpoint 4.500\noutpoint 10.000\n\
             file 'file:/rec/c/b.mp4'\nfile 'file:/rec/c/it'\\''s.mp4'\ninpoint 0.000\noutpoint 5.000\n"
        );
    }
}
