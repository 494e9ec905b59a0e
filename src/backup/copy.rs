//! Copying one segment to a directory destination: under a temporary name,
//! hashed on the way, verified, then renamed into place.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes read and written at a time.
const CHUNK: usize = 256 * 1024;

/// A shared bandwidth limit: all copies of a job together stay under `bytes_per_s`.
pub struct Throttle {
    bytes_per_s: Option<u64>,
    state: Mutex<(Instant, u64)>,
}

impl Throttle {
    /// A limit of `bytes_per_s` (none when `None`).
    pub fn new(bytes_per_s: Option<u64>) -> Self {
        Self { bytes_per_s, state: Mutex::new((Instant::now(), 0)) }
    }

    /// Waits until `bytes` more fit under the limit.
    pub async fn take(&self, bytes: usize) {
        let Some(rate) = self.bytes_per_s else { return };
        let wait = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.1 += bytes as u64;
            let due = Duration::from_secs_f64(state.1 as f64 / rate as f64);
            due.saturating_sub(state.0.elapsed())
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// What a verified copy holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copied {
    /// Its size.
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the source as read (and of the copy when verified by hash).
    pub sha256: String,
}

/// Hex SHA-256 of a file.
pub async fn sha256_of(path: &Path) -> Result<String> {
    // Reading and hashing a whole file is long work: on a blocking thread, off the runtime.
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hex(&hasher.finalize()))
    })
    .await?
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The temporary name a copy is written under.
pub fn partial_name(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Copies `src` to `dest_root/relative` through a temporary file; `still_ok` is asked between
/// chunks (an unplugged stick fails the copy at once); `by_hash` verifies by re-reading.
pub async fn copy_file(
    src: &Path,
    dest_root: &Path,
    relative: &str,
    throttle: &Throttle,
    by_hash: bool,
    still_ok: &(dyn Fn() -> Result<(), String> + Sync),
) -> Result<Copied> {
    let dest = dest_root.join(relative);
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await.with_context(|| format!("creating {}", dir.display()))?;
    }
    let partial = partial_name(&dest);
    let mut input = tokio::fs::File::open(src).await.with_context(|| format!("opening {}", src.display()))?;
    let mut output =
        tokio::fs::File::create(&partial).await.with_context(|| format!("creating {}", partial.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    loop {
        if let Err(why) = still_ok() {
            bail!(why);
        }
        let n = input.read(&mut buf).await.with_context(|| format!("reading {}", src.display()))?;
        if n == 0 {
            break;
        }
        throttle.take(n).await;
        // Hashing a chunk takes about a millisecond on a small board: off the runtime thread.
        (hasher, buf) = tokio::task::spawn_blocking(move || {
            hasher.update(&buf[..n]);
            (hasher, buf)
        })
        .await?;
        output.write_all(&buf[..n]).await.with_context(|| format!("writing {}", partial.display()))?;
        bytes += n as u64;
    }
    output.sync_all().await.with_context(|| format!("syncing {}", partial.display()))?;
    drop(output);
    let sha256 = hex(&hasher.finalize());
    let written = tokio::fs::metadata(&partial).await?.len();
    if written != bytes {
        bail!("{}: {written} bytes written, {bytes} read", partial.display());
    }
    if by_hash {
        let copy = sha256_of(&partial).await?;
        if copy != sha256 {
            bail!("{}: SHA-256 of the copy differs from the source", partial.display());
        }
    }
    tokio::fs::rename(&partial, &dest).await.with_context(|| format!("renaming {}", partial.display()))?;
    // The rename is durable only with its directory: synced before the manifest says `done`.
    if let Some(dir) = dest.parent() {
        tokio::fs::File::open(dir).await?.sync_all().await.with_context(|| format!("syncing {}", dir.display()))?;
    }
    Ok(Copied { bytes, sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_verified_through_a_temporary_name() {
        let dir = std::env::temp_dir().join(format!("heldar-copy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let src = dir.join("src.mp4");
        std::fs::write(&src, vec![7u8; 600_000]).expect("write");
        let ok = || Ok(());
        let copied = copy_file(&src, &dir.join("dest"), "cam/2026-01-01/000000.mp4", &Throttle::new(None), true, &ok)
            .await
            .expect("copy");
        let dest = dir.join("dest/cam/2026-01-01/000000.mp4");
        assert_eq!(std::fs::read(&dest).expect("read").len(), 600_000);
        assert_eq!(copied.sha256, sha256_of(&src).await.expect("hash"));
        assert!(!partial_name(&dest).exists());
        let refused = || Err("unplugged".to_string());
        let err = copy_file(&src, &dir.join("dest"), "cam/x.mp4", &Throttle::new(None), false, &refused).await;
        assert!(err.is_err_and(|e| e.to_string().contains("unplugged")));
        assert!(!dir.join("dest/cam/x.mp4").exists(), "nothing under the final name");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_throttle_holds_the_rate() {
        let throttle = Throttle::new(Some(1_000_000));
        let started = Instant::now();
        for _ in 0..5 {
            throttle.take(100_000).await;
        }
        assert!(started.elapsed() >= Duration::from_millis(450), "{:?}", started.elapsed());
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0xAB, 0x01]), "ab01");
    }
}
