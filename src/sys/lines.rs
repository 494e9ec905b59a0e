//! Lines of what a child process prints, each cut at a bound: a program that
//! writes without a newline (or echoes a hostile stream) cannot grow the
//! service's memory; the rest of an over-long line is read and dropped.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest line kept, in bytes; ffmpeg's and rclone's log lines are far shorter.
pub const MAX_LINE: usize = 8 * 1024;

/// Reads lines of at most `MAX_LINE` bytes.
pub struct BoundedLines<R> {
    reader: R,
    line: Vec<u8>,
    /// Bytes of the line being read were consumed (it may have been cut to nothing kept).
    started: bool,
}

impl<R: AsyncBufRead + Unpin> BoundedLines<R> {
    /// Lines of `reader`.
    pub fn new(reader: R) -> Self {
        Self { reader, line: Vec::new(), started: false }
    }

    /// The next line without its line ending, lossy UTF-8, cut at `MAX_LINE` bytes; `None`
    /// at the end. Cancel-safe: a line read in part is kept for the next call.
    pub async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return Ok(self.started.then(|| self.take()));
            }
            let end = buf.iter().position(|b| *b == b'\n');
            let chunk = &buf[..end.unwrap_or(buf.len())];
            let room = MAX_LINE.saturating_sub(self.line.len());
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            self.started = true;
            let used = end.map_or(buf.len(), |at| at + 1);
            self.reader.consume(used);
            if end.is_some() {
                return Ok(Some(self.take()));
            }
        }
    }

    fn take(&mut self) -> String {
        self.started = false;
        let line = std::mem::take(&mut self.line);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        String::from_utf8_lossy(line).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(input: &[u8]) -> Vec<String> {
        let mut lines = BoundedLines::new(tokio::io::BufReader::with_capacity(7, input));
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().await.expect("read") {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn lines_split_on_newlines_across_reads() {
        assert_eq!(all(b"one\r\ntwo\n\nlast without end").await, ["one", "two", "", "last without end"]);
        assert!(all(b"").await.is_empty());
    }

    #[tokio::test]
    async fn an_endless_line_is_cut_and_the_next_one_kept() {
        let mut input = vec![b'x'; 3 * MAX_LINE];
        input.extend_from_slice(b"\nnext\n");
        let lines = all(&input).await;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(lines[1], "next");
    }
}
