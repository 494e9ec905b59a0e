//! sftp, s3 and rclone destinations through one rclone process per job. The
//! remote is defined in rclone's environment (`RCLONE_CONFIG_<NAME>_*`), so
//! credentials never appear on a command line, and they are scrubbed from
//! whatever rclone says.

use super::index;
use super::job::{BackupContext, JobProgress};
use super::select::{self, Selection, ToCopy};
use crate::config::schema::{DestinationConfig, DestinationKind, PolicyConfig, VerifyMode};
use crate::config::secret::read_secret;
use crate::sys::lines::BoundedLines;
use crate::sys::process::find_program;
use crate::sys::scrub::scrub;
use crate::wallclock::UnixMs;
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::Command;

/// The remote name heldar-edge defines for sftp and s3 destinations.
const REMOTE: &str = "heldardest";

/// How rclone reaches a destination: the remote path, its environment, and the secrets to scrub.
#[derive(Debug, Default)]
pub struct RemoteSpec {
    /// `remote:path` for rclone.
    pub target: String,
    /// Environment variables defining the remote.
    pub env: Vec<(String, String)>,
    /// Secrets to scrub from rclone's output.
    pub secrets: Vec<String>,
}

/// The remote of `dest`; `obscured` is the sftp password already run through `rclone obscure`.
pub fn remote_spec(dest: &DestinationConfig, obscured: Option<&str>, secret_key: Option<&str>) -> RemoteSpec {
    let var = |key: &str| format!("RCLONE_CONFIG_{}_{key}", REMOTE.to_uppercase());
    let mut spec = RemoteSpec { target: format!("{REMOTE}:{}", dest.path), ..RemoteSpec::default() };
    let mut set = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            spec.env.push((var(key), value));
        }
    };
    match dest.kind {
        DestinationKind::Sftp => {
            set("TYPE", Some("sftp".into()));
            set("HOST", dest.host.clone());
            set("USER", dest.user.clone());
            set("PORT", dest.port.map(|p| p.to_string()));
            set("PASS", obscured.map(str::to_string));
            set("KEY_FILE", dest.key_file.as_ref().map(|p| p.display().to_string()));
        }
        DestinationKind::S3 => {
            set("TYPE", Some("s3".into()));
            set("PROVIDER", Some(dest.provider.clone().unwrap_or_else(|| "Other".into())));
            set("ACCESS_KEY_ID", dest.access_key_id.clone());
            set("SECRET_ACCESS_KEY", secret_key.map(str::to_string));
            set("ENDPOINT", dest.endpoint.clone());
            set("REGION", dest.region.clone());
        }
        DestinationKind::Rclone => {
            spec.target = format!("{}:{}", dest.remote.clone().unwrap_or_default(), dest.path);
            if let Some(config) = &dest.rclone_config {
                spec.env.push(("RCLONE_CONFIG".into(), config.display().to_string()));
            }
        }
        DestinationKind::Local | DestinationKind::Usb => {}
    }
    spec.secrets.extend(obscured.map(str::to_string));
    spec.secrets.extend(secret_key.map(str::to_string));
    spec
}

/// Parses the percentage of an rclone stats line (`… 1.2 MiB / 10 MiB, 12%, 1 MiB/s, ETA 9s`).
pub fn stats_percent(line: &str) -> Option<u64> {
    let mut parts = line.split(',').map(str::trim);
    parts.next().filter(|first| first.contains(" / "))?;
    parts.find_map(|part| part.strip_suffix('%')?.trim().parse().ok())
}

/// The rclone binary, or an error saying how to get it.
pub fn rclone_binary() -> Result<std::path::PathBuf> {
    find_program("rclone")
        .context("rclone is not installed, and sftp/s3/rclone destinations need it: apt-get install rclone")
}

async fn obscure(rclone: &Path, password: &str) -> Result<String> {
    let mut child = Command::new(rclone)
        .args(["obscure", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("running rclone obscure")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(password.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!("rclone obscure failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Copies the selection to `dest` with one rclone process.
pub async fn copy_to_remote(
    ctx: &BackupContext,
    policy: &PolicyConfig,
    dest: &DestinationConfig,
    selection: Selection,
    progress: &mut JobProgress,
    report: &(dyn Fn(&JobProgress) + Sync),
) -> Result<()> {
    let rclone = rclone_binary()?;
    let spec = credentials(&rclone, &ctx.config_dir, dest).await?;
    // The file list, written page by page, in the data directory (never at a predictable
    // path in /tmp); its files stay read-locked for the whole job.
    let list_path = ctx.data_dir.join(format!("backup-{}.list", progress.job));
    let files = write_file_list(ctx, selection, &list_path).await?;
    if files.is_empty() {
        let _ = std::fs::remove_file(&list_path);
        return Ok(());
    }
    let _reading = ctx.reads.hold(&files.iter().map(|f| f.id).collect::<Vec<_>>());
    let job = RcloneJob { rclone: &rclone, policy, list: &list_path, recordings_dir: &ctx.recordings_dir, spec: &spec };
    let result = job.run(&dest.id, progress, report).await;
    let _ = std::fs::remove_file(&list_path);
    result?;
    let dest_id = dest.id.clone();
    let copied: Vec<(String, u64)> = files.iter().map(|f| (f.path.clone(), f.bytes)).collect();
    ctx.store
        .call(move |conn| {
            for (path, bytes) in &copied {
                index::record_copy(conn, &dest_id, path, *bytes, None, UnixMs::now())?;
            }
            Ok(())
        })
        .await?;
    progress.files_done = files.len() as u64;
    progress.bytes_done = files.iter().map(|f| f.bytes).sum();
    Ok(())
}

/// The remote of `dest` with its secrets read (the password obscured as rclone wants it).
async fn credentials(rclone: &Path, config_dir: &Path, dest: &DestinationConfig) -> Result<RemoteSpec> {
    let password = dest.password_file.as_ref().map(|f| read_secret(&config_dir.join(f))).transpose()?;
    let obscured = match &password {
        Some(password) => Some(obscure(rclone, password).await?),
        None => None,
    };
    let secret_key = dest.secret_access_key_file.as_ref().map(|f| read_secret(&config_dir.join(f))).transpose()?;
    let mut spec = remote_spec(dest, obscured.as_deref(), secret_key.as_deref());
    spec.secrets.extend(password);
    Ok(spec)
}

/// Writes the selected files' paths to `list_path`, one a line; returns them.
async fn write_file_list(ctx: &BackupContext, selection: Selection, list_path: &Path) -> Result<Vec<ToCopy>> {
    // A list left by a crash is replaced; a new one is created owner-only, never followed.
    let _ = std::fs::remove_file(list_path);
    let mut list = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(list_path)
        .with_context(|| format!("creating {}", list_path.display()))?;
    let mut files = Vec::new();
    let mut after = (i64::MIN, i64::MIN);
    loop {
        let sel = selection.clone();
        let page = ctx.store.call(move |conn| select::page(conn, &sel, after)).await?;
        let Some(last) = page.last() else { break };
        after = (last.start_ms, last.id);
        for file in page {
            writeln!(list, "{}", file.path)?;
            files.push(file);
        }
    }
    Ok(files)
}

/// One job's rclone: copy the listed files, then check them when the policy verifies by hash.
struct RcloneJob<'a> {
    rclone: &'a Path,
    policy: &'a PolicyConfig,
    list: &'a Path,
    recordings_dir: &'a Path,
    spec: &'a RemoteSpec,
}

impl RcloneJob<'_> {
    /// `rclone copy` (or `rclone check` when `check`) of the listed files.
    fn command(&self, check: bool) -> Command {
        let mut command = Command::new(self.rclone);
        if check {
            command.args(["check", "--one-way", "--download"]);
        } else {
            command.args(["copy", "--stats", "1s", "--stats-one-line", "--stats-log-level", "NOTICE"]);
            command.args(["--transfers", &self.policy.concurrency.to_string()]);
            if let Some(rate) = self.policy.bandwidth {
                command.args(["--bwlimit", &format!("{}B", rate.0)]);
            }
        }
        command
            .arg("--files-from")
            .arg(self.list)
            .arg(self.recordings_dir)
            .arg(&self.spec.target)
            .envs(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            // rclone 1.60's AWS SDK fails on this variable ("unsupported transport"); rclone
            // takes its CA certificates through --ca-cert instead.
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs the copy, reporting its progress, then the check.
    async fn run(&self, dest: &str, progress: &mut JobProgress, report: &(dyn Fn(&JobProgress) + Sync)) -> Result<()> {
        let mut child = self.command(false).spawn().context("starting rclone")?;
        let stderr = child.stderr.take().context("rclone stderr")?;
        let mut lines = BoundedLines::new(BufReader::new(stderr));
        let mut last_error = String::new();
        while let Some(line) = lines.next_line().await? {
            let line = scrub(&line, &self.spec.secrets);
            if let Some(percent) = stats_percent(&line) {
                progress.bytes_done = progress.bytes_total * percent.min(100) / 100;
                report(progress);
            } else if !line.trim().is_empty() {
                tracing::warn!(destination = %dest, message = %line, "rclone");
                last_error = line;
            }
        }
        let status = child.wait().await?;
        if !status.success() {
            bail!("rclone copy failed ({status}): {last_error}");
        }
        if self.policy.verify == VerifyMode::Sha256 {
            let out = self.command(true).output().await.context("running rclone check")?;
            if !out.status.success() {
                let said = scrub(&String::from_utf8_lossy(&out.stderr), &self.spec.secrets);
                bail!("rclone check found differences: {}", said.lines().last().unwrap_or(""));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::DestinationKind;

    fn dest(kind: DestinationKind) -> DestinationConfig {
        DestinationConfig {
            id: "nas".into(),
            kind,
            path: "bucket/heldar".into(),
            host: Some("10.0.0.2".into()),
            port: Some(2222),
            user: Some("backup".into()),
            password_file: None,
            key_file: None,
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: None,
            provider: Some("Minio".into()),
            access_key_id: Some("AKIA".into()),
            secret_access_key_file: None,
            remote: Some("mine".into()),
            rclone_config: None,
        }
    }

    #[test]
    fn remotes_are_defined_in_the_environment() {
        let sftp = remote_spec(&dest(DestinationKind::Sftp), Some("obscured"), None);
        assert_eq!(sftp.target, "heldardest:bucket/heldar");
        assert!(sftp.env.contains(&("RCLONE_CONFIG_HELDARDEST_TYPE".into(), "sftp".into())));
        assert!(sftp.env.contains(&("RCLONE_CONFIG_HELDARDEST_PORT".into(), "2222".into())));
        assert!(sftp.env.contains(&("RCLONE_CONFIG_HELDARDEST_PASS".into(), "obscured".into())));
        let s3 = remote_spec(&dest(DestinationKind::S3), None, Some("s3cret"));
        assert!(s3.env.contains(&("RCLONE_CONFIG_HELDARDEST_SECRET_ACCESS_KEY".into(), "s3cret".into())));
        assert!(s3.env.contains(&("RCLONE_CONFIG_HELDARDEST_PROVIDER".into(), "Minio".into())));
        assert_eq!(s3.secrets, ["s3cret"]);
        assert_eq!(remote_spec(&dest(DestinationKind::Rclone), None, None).target, "mine:bucket/heldar");
    }

    #[test]
    fn reads_the_stats_percentage() {
        assert_eq!(stats_percent("2026/11/24 16:40:00 NOTICE:    1.2 MiB / 10 MiB, 12%, 1 MiB/s, ETA 9s"), Some(12));
        assert_eq!(stats_percent("Transferred:   	    10 MiB / 10 MiB, 100%, 1.1 MiB/s, ETA 0s"), Some(100));
        assert_eq!(stats_percent("ERROR : a.mp4: Failed to copy: 50%, maybe"), None);
    }
}
