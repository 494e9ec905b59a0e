//! The command line's words: what the user asked for.

use crate::wallclock::UnixMs;
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
        from: UnixMs,
        /// Window end.
        to: UnixMs,
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
    /// Print an argon2id hash of a password for `[[http.user]]`.
    Passwd,
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
  sweep [-c FILE]    run retention now and print what it deleted (while the service runs: call sweep)
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
  passwd             read a password (without echo; from standard input when it is no
                     terminal) and print its argon2id hash for [[http.user]] password_hash
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
        Some("passwd") => return expect_end(args, Command::Passwd),
        Some(command @ ("run" | "check" | "sweep" | "backup" | "export" | "call")) => command,
        Some(other) => return Err(format!("unknown command {other:?}")),
    };
    let mut options = Options::new();
    while let Some(arg) = args.next() {
        if matches!(arg.as_str(), "-h" | "--help") {
            return Ok(Command::Help);
        }
        options.take(command, arg, &mut args)?;
    }
    options.into_command(command)
}

/// The options seen so far.
struct Options {
    config: PathBuf,
    emit_test_events: u64,
    stall_store_after_s: Option<u64>,
    positional: Vec<String>,
    cameras: Vec<String>,
    from: Option<UnixMs>,
    to: Option<UnixMs>,
    out: Option<PathBuf>,
    max_bytes: u64,
    cut: bool,
    json: Option<String>,
    key: Option<String>,
    secret_file: Option<PathBuf>,
    timeout_s: u64,
}

type Args<'a> = std::slice::Iter<'a, String>;

fn value<'a>(args: &mut Args<'a>, missing: &str) -> Result<&'a String, String> {
    args.next().ok_or_else(|| missing.to_string())
}

fn time(flag: &str, value: Option<&String>) -> Result<UnixMs, String> {
    let value = value.ok_or(format!("{flag} needs a time"))?;
    UnixMs::parse_rfc3339(value).ok_or(format!("{flag}: {value:?} is not an RFC 3339 time like 2026-11-24T14:00:00Z"))
}

impl Options {
    fn new() -> Self {
        Self {
            config: PathBuf::from(crate::config::DEFAULT_CONFIG_PATH),
            emit_test_events: 0,
            stall_store_after_s: None,
            positional: Vec::new(),
            cameras: Vec::new(),
            from: None,
            to: None,
            out: None,
            max_bytes: crate::backup::export::DEFAULT_MAX_BYTES,
            cut: false,
            json: None,
            key: None,
            secret_file: None,
            timeout_s: 30,
        }
    }

    /// Takes `arg` (and its value from `args`) for `command`.
    fn take(&mut self, command: &str, arg: &str, args: &mut Args<'_>) -> Result<(), String> {
        let taken = match (command, arg) {
            (_, "-c" | "--config") => {
                self.config = value(args, "-c needs a file")?.into();
                true
            }
            ("run", _) => self.take_run(arg, args)?,
            ("export", _) => self.take_export(arg, args)?,
            ("call", _) => self.take_call(arg, args)?,
            ("backup", _) if !arg.starts_with('-') && self.positional.is_empty() => {
                self.positional.push(arg.to_string());
                true
            }
            _ => false,
        };
        if taken { Ok(()) } else { Err(format!("unknown option {arg:?} for {command}")) }
    }

    fn take_run(&mut self, arg: &str, args: &mut Args<'_>) -> Result<bool, String> {
        match arg {
            "--test-stall-store-after" => {
                let n = value(args, "--test-stall-store-after needs seconds")?;
                let seconds = n.parse().map_err(|_| format!("--test-stall-store-after: {n:?} is not seconds"))?;
                self.stall_store_after_s = Some(seconds);
            }
            "--emit-test-events" => {
                let n = value(args, "--emit-test-events needs a count")?;
                self.emit_test_events = n.parse().map_err(|_| format!("--emit-test-events: {n:?} is not a count"))?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn take_export(&mut self, arg: &str, args: &mut Args<'_>) -> Result<bool, String> {
        match arg {
            "--camera" => self.cameras.push(value(args, "--camera needs an id")?.clone()),
            "--from" => self.from = Some(time("--from", args.next())?),
            "--to" => self.to = Some(time("--to", args.next())?),
            "--out" => self.out = Some(PathBuf::from(value(args, "--out needs a file")?)),
            "--max-bytes" => {
                let size = value(args, "--max-bytes needs a size")?;
                self.max_bytes = crate::config::size::parse_byte_size(size).map_err(|e| format!("--max-bytes: {e}"))?;
            }
            "--cut" => self.cut = true,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn take_call(&mut self, arg: &str, args: &mut Args<'_>) -> Result<bool, String> {
        match arg {
            "--json" => self.json = Some(value(args, "--json needs an object")?.clone()),
            "--key" => self.key = Some(value(args, "--key needs a key id")?.clone()),
            "--secret-file" => self.secret_file = Some(PathBuf::from(value(args, "--secret-file needs a file")?)),
            "--timeout" => {
                let s = value(args, "--timeout needs seconds")?;
                self.timeout_s =
                    s.parse().ok().filter(|t| *t > 0).ok_or(format!("--timeout: {s:?} is not a number of seconds"))?;
            }
            other if !other.starts_with('-') => self.positional.push(other.to_string()),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn into_command(mut self, command: &str) -> Result<Command, String> {
        let config = self.config;
        Ok(match command {
            "run" => Command::Run {
                config,
                emit_test_events: self.emit_test_events,
                stall_store_after_s: self.stall_store_after_s,
            },
            "sweep" => Command::Sweep { config },
            "backup" => Command::Backup { config, policy: self.positional.pop().ok_or("backup needs a policy id")? },
            "call" => {
                let mut words = self.positional.into_iter();
                let name = words.next().ok_or("call needs a command name")?;
                if self.key.is_some() != self.secret_file.is_some() {
                    return Err("--key and --secret-file go together".into());
                }
                let (json, key, secret_file, timeout_s) = (self.json, self.key, self.secret_file, self.timeout_s);
                Command::Call { config, name, words: words.collect(), json, key, secret_file, timeout_s }
            }
            "export" => Command::Export {
                config,
                cameras: self.cameras,
                from: self.from.ok_or("export needs --from")?,
                to: self.to.ok_or("export needs --to")?,
                out: self.out,
                max_bytes: self.max_bytes,
                cut: self.cut,
            },
            _ => Command::Check { config },
        })
    }
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
