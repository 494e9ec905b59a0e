//! Bytes served as they are, a chunk at a time: files on disk with `Range`, or a
//! pipe. The body holds the segment's read lock (retention leaves it alone) and a
//! viewer slot until the last byte is sent or the viewer goes away.

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use std::io::SeekFrom;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};

/// Bytes read from disk per frame.
const CHUNK: usize = 64 * 1024;

/// What `Range` asked of a resource of some length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// All of it (no `Range`, or one this server does not split: several ranges).
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// Nothing it holds: `416`.
    Unsatisfiable,
}

/// Reads a `Range` header against a resource of `len` bytes: one `bytes=` range, open-ended
/// or a suffix.
pub fn wanted(range: Option<&str>, len: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else { return Wanted::Whole };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else { return Wanted::Unsatisfiable };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => Some((start, end.min(len.saturating_sub(1)))),
        (Ok(start), Err(_)) if last.is_empty() => Some((start, len.saturating_sub(1))),
        (Err(_), Ok(suffix)) if first.is_empty() && suffix > 0 => {
            Some((len.saturating_sub(suffix), len.saturating_sub(1)))
        }
        _ => None,
    };
    match parsed {
        Some((start, end)) if start < len && start <= end => Wanted::Part(start, end),
        _ => Wanted::Unsatisfiable,
    }
}

/// A response body that streams what a reader gives, a chunk at a time, keeping `holds`
/// (read lock, viewer slot, the process writing it) alive while it does: `len` bytes of a
/// file from an offset, or a pipe to its end.
pub struct ReadBody<R> {
    reader: R,
    /// Bytes still to send; `None`: until the reader ends.
    left: Option<u64>,
    done: bool,
    buf: BytesMut,
    _holds: Box<dyn Send + Sync>,
}

/// A file's bytes.
pub type FileBody = ReadBody<tokio::fs::File>;

impl FileBody {
    /// The `len` bytes of `file` from `offset`.
    pub async fn new(
        mut file: tokio::fs::File,
        offset: u64,
        len: u64,
        holds: Box<dyn Send + Sync>,
    ) -> std::io::Result<Self> {
        file.seek(SeekFrom::Start(offset)).await?;
        Ok(Self { reader: file, left: Some(len), done: len == 0, buf: BytesMut::new(), _holds: holds })
    }
}

impl<R> ReadBody<R> {
    /// Everything `reader` gives until it ends.
    pub fn to_end(reader: R, holds: Box<dyn Send + Sync>) -> Self {
        Self { reader, left: None, done: false, buf: BytesMut::new(), _holds: holds }
    }
}

impl<R: AsyncRead + Unpin> Body for ReadBody<R> {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let want = self.left.map_or(CHUNK, |left| CHUNK.min(usize::try_from(left).unwrap_or(CHUNK)));
        let this = &mut *self;
        this.buf.resize(want, 0);
        let mut read = ReadBuf::new(&mut this.buf[..want]);
        ready!(Pin::new(&mut this.reader).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        if n == 0 {
            this.done = true;
            return match this.left {
                None => Poll::Ready(None),
                // The file is shorter than the index said: end the body early; the client sees
                // fewer bytes than Content-Length and can tell.
                Some(_) => {
                    Poll::Ready(Some(Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file ended early"))))
                }
            };
        }
        if let Some(left) = &mut this.left {
            *left -= n as u64;
            this.done = *left == 0;
        }
        Poll::Ready(Some(Ok(Frame::data(this.buf.split_to(n).freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.left.map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(wanted(None, 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-9"), 100), Wanted::Part(0, 9));
        assert_eq!(wanted(Some("bytes=90-"), 100), Wanted::Part(90, 99));
        assert_eq!(wanted(Some("bytes=90-500"), 100), Wanted::Part(90, 99), "clamped to the end");
        assert_eq!(wanted(Some("bytes=-10"), 100), Wanted::Part(90, 99), "the last 10");
        assert_eq!(wanted(Some("bytes=-500"), 100), Wanted::Part(0, 99));
        assert_eq!(wanted(Some("bytes=0-1,5-6"), 100), Wanted::Whole, "several ranges: all of it");
        for bad in ["bytes=100-", "bytes=9-3", "bytes=x-1", "bytes=-0", "bytes=5"] {
            assert_eq!(wanted(Some(bad), 100), Wanted::Unsatisfiable, "{bad}");
        }
        assert_eq!(wanted(Some("items=0-1"), 100), Wanted::Whole, "another unit is ignored");
    }
}
