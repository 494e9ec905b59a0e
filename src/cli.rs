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
        /// Test hook: hang the store thread after this many seconds.
        stall_store_after_s: Option<u64>,
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
    /// Send a command to a node over MQTT and print its reply.
    Call {
        /// Config file (broker, node id).
        config: PathBuf,
        /// Command name.
        name: String,
        /// `key=value` arguments.
        words: Vec<String>,
        /// `--json` arguments.
        json: Option<String>,
        /// Key id to sign with.
        key: Option<String>,
        /// File holding that key's secret.
        secret_file: Option<PathBuf>,
        /// Seconds to wait for the reply.
        timeout_s: u64,
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
  call NAME [key=value ...] [--json ARGS] [--key ID --secret-file FILE] [--timeout S] [-c FILE]
                     send command NAME to the node of FILE over MQTT (signed with the key
                     when given), print the reply; exit 0 when it is ok, 1 otherwise.
                     a value that parses as JSON (60, true, [...]) is JSON, anything else text
  version            print the version

options:
  -c, --config FILE          config file
      --emit-test-events N   (run, for tests) emit N `test` events through the outbox at start
      --test-stall-store-after S
                             (run, for tests) hang the index thread after S seconds: the
                             systemd watchdog pings stop

environment:
  HELDAR_LOG   log filter, e.g. `debug` or `heldar_edge=debug,info` (default info)
";

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut args = args.iter();
    let command = match args.next().map(String::as_str) {
        None | Some("help" | "-h" | "--help") => return Ok(Command::Help),
        Some("version" | "-V" | "--version") => return expect_end(args, Command::Version),
        Some(command @ ("run" | "check" | "sweep" | "backup" | "export" | "call")) => command,
        Some(other) => return Err(format!("unknown command {other:?}")),
    };
    let mut config = PathBuf::from(crate::config::DEFAULT_CONFIG_PATH);
    let (mut emit_test_events, mut stall_store_after_s) = (0, None);
    let mut positional: Vec<String> = Vec::new();
    let (mut cameras, mut from, mut to, mut out, mut max_bytes) =
        (Vec::new(), None, None, None, crate::backup::export::DEFAULT_MAX_BYTES);
    let mut cut = false;
    let (mut json, mut key, mut secret_file, mut timeout_s) = (None, None, None, 30);
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
            "--test-stall-store-after" if command == "run" => {
                let n = args.next().ok_or("--test-stall-store-after needs seconds")?;
                stall_store_after_s =
                    Some(n.parse().map_err(|_| format!("--test-stall-store-after: {n:?} is not seconds"))?);
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
            "--json" if command == "call" => json = Some(args.next().ok_or("--json needs an object")?.clone()),
            "--key" if command == "call" => key = Some(args.next().ok_or("--key needs a key id")?.clone()),
            "--secret-file" if command == "call" => {
                secret_file = Some(PathBuf::from(args.next().ok_or("--secret-file needs a file")?));
            }
            "--timeout" if command == "call" => {
                let s = args.next().ok_or("--timeout needs seconds")?;
                timeout_s =
                    s.parse().ok().filter(|t| *t > 0).ok_or(format!("--timeout: {s:?} is not a number of seconds"))?;
            }
            other if command == "call" && !other.starts_with('-') => positional.push(other.to_string()),
            "-h" | "--help" => return Ok(Command::Help),
            other if command == "backup" && !other.starts_with('-') && positional.is_empty() => {
                positional.push(other.to_string());
            }
            other => return Err(format!("unknown option {other:?} for {command}")),
        }
    }
    Ok(match command {
        "run" => Command::Run { config, emit_test_events, stall_store_after_s },
        "sweep" => Command::Sweep { config },
        "backup" => {
            let policy = positional.pop().ok_or("backup needs a policy id")?;
            Command::Backup { config, policy }
        }
        "call" => {
            let mut words = positional.into_iter();
            let name = words.next().ok_or("call needs a command name")?;
            if key.is_some() != secret_file.is_some() {
                return Err("--key and --secret-file go together".into());
            }
            Command::Call { config, name, words: words.collect(), json, key, secret_file, timeout_s }
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
            Ok(Command::Run { config: "x.toml".into(), emit_test_events: 0, stall_store_after_s: None })
        );
        assert_eq!(parse(&args(&["check"])), Ok(Command::Check { config: crate::config::DEFAULT_CONFIG_PATH.into() }));
        assert_eq!(
            parse(&args(&["run", "--emit-test-events", "5"])),
            Ok(Command::Run {
                config: crate::config::DEFAULT_CONFIG_PATH.into(),
                emit_test_events: 5,
                stall_store_after_s: None
            })
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
        assert_eq!(
            parse(&args(&[
                "call",
                "record",
                "camera=a",
                "mode=on",
                "--key",
                "ops",
                "--secret-file",
                "k",
                "-c",
                "x.toml"
            ])),
            Ok(Command::Call {
                config: "x.toml".into(),
                name: "record".into(),
                words: vec!["camera=a".into(), "mode=on".into()],
                json: None,
                key: Some("ops".into()),
                secret_file: Some("k".into()),
                timeout_s: 30,
            })
        );
        assert!(parse(&args(&["call"])).is_err());
        assert!(parse(&args(&["call", "status", "--key", "ops"])).is_err(), "a key needs its secret");
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
