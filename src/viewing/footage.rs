//! The media URLs: recorded and live playlists, and the files they name, served
//! from disk with `Range`, each stream holding a viewer slot (`max_viewers`).

use super::live;
use super::media::{FileBody, Wanted};
use super::playlist;
use super::routes::{App, Reply, full, internal, set, text};
use crate::recording::fragments::Fragments;
use crate::recording::index;
use crate::wallclock::UnixMs;
use http_body_util::BodyExt;
use hyper::header;
use hyper::{Response, StatusCode};
use tokio::sync::OwnedSemaphorePermit;

/// `GET /cameras/<id>/recorded.m3u8` over `[from, to)`; `uri_query` (`?share=…` or empty)
/// goes on every URI it names.
pub async fn recorded(app: &App, camera: &str, (from, to): (UnixMs, UnixMs), uri_query: &str) -> Reply {
    let camera = camera.to_string();
    let limit = playlist::MAX_PLAYLIST_SEGMENTS;
    match app.store.call(move |conn| index::camera_window(conn, &camera, from, to, limit)).await {
        Ok(rows) => playlist_reply(playlist::recorded(&rows, uri_query)),
        Err(e) => internal(&e),
    }
}

/// `GET /cameras/<id>/live.m3u8`: the fragments written last.
pub async fn live(app: &App, camera: &str) -> Reply {
    let Some(current) = app.cameras.writing(camera) else {
        return text(StatusCode::NOT_FOUND, "this camera records nothing now");
    };
    let mut known = app.live.of(camera);
    if known.is_empty() {
        // A first viewer: the newest indexed file goes before the one being written, so the
        // playlist has fragments also while that one has none complete yet.
        let id = camera.to_string();
        if let Ok(Some(row)) = app.store.call(move |conn| index::latest_segment(conn, &id)).await {
            let path = app.config.borrow().recordings_dir.join(&row.segment.path);
            if path != current {
                known = app.live.follow(camera, &path, 0);
            }
        }
    }
    let changed = known.last().is_none_or(|f| f.path != current);
    let before = known.last().map(|f| f.path.clone()).filter(|_| changed);
    let fragments_before = match before {
        Some(path) => tokio::task::spawn_blocking(move || live::layout(&path).map(|l| l.fragments.len() as u64))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0),
        None => 0,
    };
    let files = app.live.follow(camera, &current, fragments_before);
    let read = tokio::task::spawn_blocking(move || {
        // The file before may be gone (retention); the one being written may not exist yet.
        files.into_iter().filter_map(|f| live::layout(&f.path).ok().map(|l| (f, l))).collect::<Vec<_>>()
    })
    .await;
    match read {
        Ok(files) => playlist_reply(live::playlist(&files)),
        Err(e) => internal(&e.into()),
    }
}

/// `GET /cameras/<id>/live/<name>`: a file a live playlist names, as it is now.
pub async fn live_file(app: &App, camera: &str, name: &str, range: Option<&str>) -> Reply {
    let Some(path) = app.live.find(camera, name) else {
        return text(StatusCode::NOT_FOUND, "no such live file: ask live.m3u8 again");
    };
    let Ok(slot) = viewer_slot(app) else { return busy() };
    let Some((file, found)) = open_scanned(path).await else { return text(StatusCode::NOT_FOUND, "the file is gone") };
    serve(file, (0, found.complete_len), range, Box::new(slot)).await
}

/// `GET /cameras/<id>/segments/<n>/{init,media}.mp4`: an indexed segment's init part or
/// fragments, under a read lock so retention keeps the file while it is served; only a
/// segment overlapping `within` when given (a share link's window).
pub async fn segment(
    app: &App,
    camera: &str,
    (id, part): (&str, &str),
    range: Option<&str>,
    within: Option<(UnixMs, UnixMs)>,
) -> Reply {
    let (Ok(id), true) = (id.parse::<i64>(), matches!(part, "init.mp4" | "media.mp4")) else {
        return text(StatusCode::NOT_FOUND, "no such segment file");
    };
    let Ok(slot) = viewer_slot(app) else { return busy() };
    // Held before the row is read: once the row is seen, retention leaves the file alone.
    let held = app.reads.hold(&[id]);
    let row = match app.store.call(move |conn| index::segment_by_id(conn, id)).await {
        Ok(Some(row))
            if row.segment.camera == camera
                && within.is_none_or(|(from, to)| row.segment.start < to && row.segment.end > from) =>
        {
            row
        }
        Ok(_) => return text(StatusCode::NOT_FOUND, "no such segment"),
        Err(e) => return internal(&e),
    };
    let path = app.config.borrow().recordings_dir.join(&row.segment.path);
    let Some((file, found)) = open_scanned(path).await else {
        return text(StatusCode::NOT_FOUND, "the segment's file is gone");
    };
    let part = match part {
        "init.mp4" => (0, found.init_len),
        _ => (found.init_len, found.complete_len - found.init_len),
    };
    serve(file, part, range, Box::new((held, slot))).await
}

/// `GET /cameras/<id>/snapshot.jpg`: the latest frame, decoded from the segment being written.
pub async fn snapshot(app: &App, camera: &str) -> Reply {
    let Ok(_slot) = viewer_slot(app) else { return busy() };
    match app.snapshots.take(&app.store, &app.cameras, camera).await {
        Ok(shot) => {
            let mut reply = full(StatusCode::OK, shot.jpeg);
            set(&mut reply, header::CONTENT_TYPE, "image/jpeg");
            set(&mut reply, header::CACHE_CONTROL, "no-store");
            reply
        }
        Err(e) if e.is::<crate::capture::snapshot::NothingRecorded>() => text(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e) => internal(&e),
    }
}

/// The file at `path`, open, and what its boxes hold now; `None` when it cannot be read.
async fn open_scanned(path: std::path::PathBuf) -> Option<(std::fs::File, Fragments)> {
    let opened = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let mut file = std::fs::File::open(&path)?;
        let len = file.metadata()?.len();
        let found = crate::recording::fragments::scan(&mut file, len)?;
        Ok((file, found))
    })
    .await;
    opened.ok()?.ok()
}

fn viewer_slot(app: &App) -> Result<OwnedSemaphorePermit, tokio::sync::TryAcquireError> {
    app.viewers.clone().try_acquire_owned()
}

/// `503` with `Retry-After`: every viewer slot of the board is taken.
pub fn busy() -> Reply {
    let mut reply = text(StatusCode::SERVICE_UNAVAILABLE, "too many viewers on this board: try again");
    set(&mut reply, header::RETRY_AFTER, "2");
    reply
}

fn playlist_reply(text: String) -> Reply {
    let mut reply = full(StatusCode::OK, text);
    set(&mut reply, header::CONTENT_TYPE, "application/vnd.apple.mpegurl");
    set(&mut reply, header::CACHE_CONTROL, "no-store");
    reply
}

/// Serves the `len` bytes of `file` from `offset` as one resource, or the part `range` asks.
async fn serve(
    file: std::fs::File,
    (offset, len): (u64, u64),
    range: Option<&str>,
    holds: Box<dyn Send + Sync>,
) -> Reply {
    let (status, start, end) = match super::media::wanted(range, len) {
        Wanted::Whole => (StatusCode::OK, 0, len.saturating_sub(1)),
        Wanted::Part(start, end) => (StatusCode::PARTIAL_CONTENT, start, end),
        Wanted::Unsatisfiable => {
            let mut reply = text(StatusCode::RANGE_NOT_SATISFIABLE, "range outside the file");
            set(&mut reply, header::CONTENT_RANGE, &format!("bytes */{len}"));
            return reply;
        }
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    let body = match FileBody::new(tokio::fs::File::from_std(file), offset + start, count, holds).await {
        Ok(body) => body,
        Err(e) => return internal(&e.into()),
    };
    let mut reply = Response::new(body.boxed());
    *reply.status_mut() = status;
    set(&mut reply, header::CONTENT_TYPE, "video/mp4");
    set(&mut reply, header::ACCEPT_RANGES, "bytes");
    set(&mut reply, header::CONTENT_LENGTH, &count.to_string());
    set(&mut reply, header::CACHE_CONTROL, "private, max-age=86400");
    if status == StatusCode::PARTIAL_CONTENT {
        set(&mut reply, header::CONTENT_RANGE, &format!("bytes {start}-{end}/{len}"));
    }
    reply
}
