//! Reading the files a config names: secrets (trimmed UTF-8 text) and other
//! credentials. One reader for `check` and `run`, so both refuse the same
//! files: only regular files, never more than a limit, never blocking on a FIFO.

use super::Config;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Largest secret file read (a password, a key's secret).
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;
/// Largest other credential file read (a CA bundle, a private key, an rclone config).
pub const MAX_CREDENTIAL_BYTES: u64 = 1 << 20;

/// Why a file named by the config was not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRefused(pub String);

impl std::fmt::Display for FileRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FileRefused {}

/// The bytes of the regular file at `path`, refused when larger than `limit`.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, FileRefused> {
    read_checked(path, limit).map_err(FileRefused)
}

fn read_checked(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    // Non-blocking, so a FIFO in the place of a file cannot hang `check` or the service.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let meta = file.metadata().map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > limit {
        return Err(format!("{} is {} bytes, more than the {limit} allowed", path.display(), meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{} grew past the {limit} bytes allowed", path.display()));
    }
    Ok(bytes)
}

/// The content of a secret file, UTF-8 with surrounding whitespace trimmed.
pub fn read_secret(path: &Path) -> Result<String, FileRefused> {
    let bytes = read_limited(path, MAX_SECRET_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|_| FileRefused(format!("{} is not UTF-8 text", path.display())))?;
    Ok(text.trim().to_string())
}

/// Every `*_file` key whose file cannot be read as `run` reads it, with why: found at start
/// (and by `check`), not mid-run.
pub fn unreadable_files(config: &Config, base: &Path) -> Vec<(String, String)> {
    // (key, file, is a secret: trimmed UTF-8 text)
    let mut files: Vec<(String, &Path, bool)> = Vec::new();
    let mqtt = &config.mqtt;
    files.extend(mqtt.password_file.as_deref().map(|f| ("mqtt.password_file".to_string(), f, true)));
    files.extend(mqtt.ca_file.as_deref().map(|f| ("mqtt.ca_file".to_string(), f, false)));
    for (i, camera) in config.cameras.iter().enumerate() {
        files.extend(camera.password_file.as_deref().map(|f| (format!("camera[{i}].password_file"), f, true)));
    }
    for (i, dest) in config.backup.destinations.iter().enumerate() {
        let key = |field: &str| format!("backup.destination[{i}].{field}");
        files.extend(dest.password_file.as_deref().map(|f| (key("password_file"), f, true)));
        files.extend(dest.key_file.as_deref().map(|f| (key("key_file"), f, false)));
        files.extend(dest.secret_access_key_file.as_deref().map(|f| (key("secret_access_key_file"), f, true)));
        files.extend(dest.rclone_config.as_deref().map(|f| (key("rclone_config"), f, false)));
    }
    for (i, key) in config.commands.keys.iter().enumerate() {
        files.push((format!("commands.key[{i}].secret_file"), key.secret_file.as_path(), true));
    }
    if let Some(http) = &config.http {
        files.extend(http.cert_file.as_deref().map(|f| ("http.cert_file".to_string(), f, false)));
        files.extend(http.key_file.as_deref().map(|f| ("http.key_file".to_string(), f, false)));
    }
    let mut problems: Vec<(String, String)> = files
        .into_iter()
        .filter_map(|(key, file, secret)| {
            let path = base.join(file);
            let read =
                if secret { read_secret(&path).map(drop) } else { read_limited(&path, MAX_CREDENTIAL_BYTES).map(drop) };
            read.err().map(|e| (key, e.to_string()))
        })
        .collect();
    // Files that let whoever reads them sign commands or pose as this node: owner-only.
    let mut private: Vec<(String, &Path)> = config
        .commands
        .keys
        .iter()
        .enumerate()
        .map(|(i, key)| (format!("commands.key[{i}].secret_file"), key.secret_file.as_path()))
        .collect();
    private.extend(config.http.as_ref().and_then(|h| h.key_file.as_deref()).map(|f| ("http.key_file".to_string(), f)));
    for (key, file) in private {
        use std::os::unix::fs::PermissionsExt;
        let path = base.join(file);
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            problems.push((
                key,
                format!("{} is readable by group or others (mode {mode:o}): chmod 600 it", path.display()),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("heldar-secret-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn reads_trimmed_text() {
        let dir = temp_dir("text");
        std::fs::write(dir.join("s"), " s3cret\n").expect("write");
        assert_eq!(read_secret(&dir.join("s")).map_err(|e| e.0), Ok("s3cret".to_string()));
    }

    #[test]
    fn refuses_directories_fifos_big_and_binary_files() {
        let dir = temp_dir("bad");
        assert!(read_secret(&dir).expect_err("a directory").0.contains("not a regular file"));
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("path");
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_secret(&fifo).expect_err("a fifo").0.contains("not a regular file"));
        std::fs::write(dir.join("big"), vec![b'a'; MAX_SECRET_BYTES as usize + 1]).expect("write");
        assert!(read_secret(&dir.join("big")).expect_err("too big").0.contains("more than"));
        std::fs::write(dir.join("bin"), [0xff, 0xfe, 0x00]).expect("write");
        assert!(read_secret(&dir.join("bin")).expect_err("binary").0.contains("not UTF-8"));
        assert!(read_secret(&dir.join("missing")).expect_err("missing").0.contains("cannot read"));
        assert!(read_limited(Path::new("/dev/zero"), 16).expect_err("device").0.contains("not a regular file"));
    }
}
