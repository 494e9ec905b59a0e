//! The command line: `run`, `check`, `version`.

use std::path::PathBuf;

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the service.
    Run {
        /// Config file.
        config: PathBuf,
        /// Test hook: emit this many `test` events at start.
        emit_test_events: u64,
    },
    /// Validate the config and print a summary.
    Check {
        /// Config file.
        config: PathBuf,
    },
    /// Run retention once on the node's index and recordings.
    Sweep {
        /// Config file.
        config: PathBuf,
    },
    /// Run one backup policy now.
    Backup {
        /// Config file.
        config: PathBuf,
        /// Policy id.
        policy: String,
    },
    /// Export a window of footage as one archive.
    Export {
        /// Config file.
        config: PathBuf,
        /// Cameras; empty = all.
        cameras: Vec<String>,
        /// Window start.
        from: crate::wallclock::UnixMs,
        /// Window end.
        to: crate::wallclock::UnixMs,
        /// Archive path; under `<data_dir>/exports/` when absent.
        out: Option<PathBuf>,
        /// Size limit.
        max_bytes: u64,
        /// Cut the edge segments to the window.
        cut: bool,
    },
    /// Print the version.
    Version,
    /// Print usage.
    Help,
}

/// Usage text.
pub const USAGE: &str = "\
usage: heldar-edge <command> [options]

commands:
  run   [-c FILE]    run the service (default config /etc/heldar/config.toml)
  check [-c FILE]    validate the config, print a summary; exit 0 when valid
  sweep [-c FILE]    run retention now (also while the service runs) and print what it deleted
  backup POLICY [-c FILE]
                     run a [[backup.policy]] now, with a progress bar
  export --from TIME --to TIME [--camera ID]... [--out FILE] [--max-bytes SIZE] [--cut] [-c FILE]
                     write the window's segments and a manifest to one tar archive
                     (times RFC 3339, e.g. 2026-11-24T14:00:00Z; default limit 4GiB);
                     --cut trims the first and last segments to the window (ffmpeg -c copy)
  version            print the version

options:
  -c, --config FILE          config file
      --emit-test-events N   (run, for tests) emit N `test` events through the outbox at start

environment:
  HELDAR_LOG   log filter, e.g. `debug` or `heldar_edge=debug,info` (default info)
";

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut args = args.iter();
    let command = match args.next().map(String::as_str) {
        None | Some("help" | "-h" | "--help") => return Ok(Command::Help),
        Some("version" | "-V" | "--version") => return expect_end(args, Command::Version),
        Some(command @ ("run" | "check" | "sweep" | "backup" | "export")) => command,
        Some(other) => return Err(format!("unknown command {other:?}")),
    };
    let mut config = PathBuf::from(crate::config::DEFAULT_CONFIG_PATH);
    let mut emit_test_events = 0;
    let mut positional: Vec<String> = Vec::new();
    let (mut cameras, mut from, mut to, mut out, mut max_bytes) = (Vec::new(), None, None, None, 4u64 << 30);
    let mut cut = false;
    let time = |flag: &str, value: Option<&String>| -> Result<crate::wallclock::UnixMs, String> {
        let value = value.ok_or(format!("{flag} needs a time"))?;
        crate::wallclock::UnixMs::parse_rfc3339(value)
            .ok_or(format!("{flag}: {value:?} is not an RFC 3339 time like 2026-11-24T14:00:00Z"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" | "--config" => {
                config = args.next().ok_or("-c needs a file")?.into();
            }
            "--emit-test-events" if command == "run" => {
                let n = args.next().ok_or("--emit-test-events needs a count")?;
                emit_test_events = n.parse().map_err(|_| format!("--emit-test-events: {n:?} is not a count"))?;
            }
            "--camera" if command == "export" => cameras.push(args.next().ok_or("--camera needs an id")?.clone()),
            "--from" if command == "export" => from = Some(time("--from", args.next())?),
            "--to" if command == "export" => to = Some(time("--to", args.next())?),
            "--out" if command == "export" => out = Some(PathBuf::from(args.next().ok_or("--out needs a file")?)),
            "--max-bytes" if command == "export" => {
                let size = args.next().ok_or("--max-bytes needs a size")?;
                max_bytes = crate::config::size::parse_byte_size(size).map_err(|e| format!("--max-bytes: {e}"))?;
            }
            "--cut" if command == "export" => cut = true,
            "-h" | "--help" => return Ok(Command::Help),
            other if command == "backup" && !other.starts_with('-') && positional.is_empty() => {
                positional.push(other.to_string());
            }
            other => return Err(format!("unknown option {other:?} for {command}")),
        }
    }
    Ok(match command {
        "run" => Command::Run { config, emit_test_events },
        "sweep" => Command::Sweep { config },
        "backup" => {
            let policy = positional.pop().ok_or("backup needs a policy id")?;
            Command::Backup { config, policy }
        }
        "export" => Command::Export {
            config,
            cameras,
            from: from.ok_or("export needs --from")?,
            to: to.ok_or("export needs --to")?,
            out,
            max_bytes,
            cut,
        },
        _ => Command::Check { config },
    })
}

fn expect_end(mut args: std::slice::Iter<'_, String>, command: Command) -> Result<Command, String> {
    match args.next() {
        Some(extra) => Err(format!("unexpected argument {extra:?}")),
        None => Ok(command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_commands_and_options() {
        assert_eq!(
            parse(&args(&["run", "-c", "x.toml"])),
            Ok(Command::Run { config: "x.toml".into(), emit_test_events: 0 })
        );
        assert_eq!(parse(&args(&["check"])), Ok(Command::Check { config: crate::config::DEFAULT_CONFIG_PATH.into() }));
        assert_eq!(
            parse(&args(&["run", "--emit-test-events", "5"])),
            Ok(Command::Run { config: crate::config::DEFAULT_CONFIG_PATH.into(), emit_test_events: 5 })
        );
        assert_eq!(parse(&args(&["version"])), Ok(Command::Version));
        assert_eq!(parse(&args(&["sweep", "-c", "x.toml"])), Ok(Command::Sweep { config: "x.toml".into() }));
        assert_eq!(
            parse(&args(&["backup", "nightly", "-c", "x.toml"])),
            Ok(Command::Backup { config: "x.toml".into(), policy: "nightly".into() })
        );
        assert!(parse(&args(&["backup"])).is_err());
        let export = parse(&args(&[
            "export",
            "--camera",
            "a",
            "--from",
            "1970-01-01T00:00:01Z",
            "--to",
            "1970-01-01T00:00:02Z",
            "--cut",
        ]));
        assert!(
            matches!(export, Ok(Command::Export { ref cameras, from, cut: true, .. }) if cameras == &["a"] && from.0 == 1000),
            "{export:?}"
        );
        assert!(parse(&args(&["export", "--from", "yesterday", "--to", "1970-01-01T00:00:02Z"])).is_err());
        assert!(parse(&args(&["export", "--from", "1970-01-01T00:00:01Z"])).is_err());
        assert_eq!(parse(&args(&[])), Ok(Command::Help));
    }

    #[test]
    fn rejects_unknown_words() {
        assert!(parse(&args(&["fly"])).is_err());
        assert!(parse(&args(&["run", "--bogus"])).is_err());
        assert!(parse(&args(&["run", "-c"])).is_err());
        assert!(parse(&args(&["check", "--emit-test-events", "1"])).is_err());
        assert!(parse(&args(&["version", "extra"])).is_err());
    }
}
