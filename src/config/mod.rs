//! Loading `config.toml` and its board profile: parse, locate errors, validate.

pub mod board;
pub mod http;
pub mod schema;
pub mod secret;
pub mod size;
pub mod validate;

pub use board::BoardProfile;
pub use schema::Config;

use std::fmt;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

/// Default location of the config file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/heldar/config.toml";

/// A config that parsed and validated, with its paths resolved.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// The parsed file.
    pub config: Config,
    /// `node.id`, or the hostname.
    pub node_id: String,
    /// The board profile in force.
    pub board: BoardProfile,
    /// `node.data_dir`, absolute.
    pub data_dir: PathBuf,
    /// `storage.recordings_dir`, absolute.
    pub recordings_dir: PathBuf,
}

impl LoadedConfig {
    /// `P` of the MQTT contract: `<topic_prefix>/<node_id>`.
    pub fn topic_root(&self) -> String {
        format!("{}/{}", self.config.mqtt.topic_prefix, self.node_id)
    }

    /// The MQTT client id in force.
    pub fn client_id(&self) -> String {
        self.config.mqtt.client_id.clone().unwrap_or_else(|| format!("heldar-{}", self.node_id))
    }

    /// The directory of the config file: relative paths in it resolve against this.
    pub fn config_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The largest sampled frame the node sends, from the board profile.
    pub fn max_frame_bytes(&self) -> usize {
        self.board.limits.max_frame_bytes.0 as usize
    }

    /// The index database file.
    pub fn index_path(&self) -> PathBuf {
        self.data_dir.join("index.db")
    }

    /// The global sampling budget in force.
    pub fn max_total_fps(&self) -> f64 {
        self.config.sampler.max_total_fps.unwrap_or(self.board.limits.max_total_fps)
    }
}

/// One located problem of a config or board file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Key path such as `camera[1].zone[0].polygon`, when known.
    pub key: Option<String>,
    /// 1-based line and column in the file, when known.
    pub line_col: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

/// Why a config could not be loaded: the file and every problem found in it.
#[derive(Clone, Debug)]
pub struct ConfigError {
    /// The file at fault (the config or its board profile).
    pub file: PathBuf,
    /// What is wrong, one entry per problem.
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    fn single(file: &Path, key: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            problems: vec![ConfigProblem { key: key.map(str::to_string), line_col: None, message: message.into() }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some((line, col)) = problem.line_col {
                write!(f, ":{line}:{col}")?;
            }
            if let Some(key) = &problem.key {
                write!(f, ": {key}")?;
            }
            write!(f, ": {}", problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads, parses and validates the config at `path` and the board profile it names.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::single(path, None, format!("cannot read: {e}")))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let loaded = load_str(&text, path, base, hostname)?;
    let unreadable = secret::unreadable_files(&loaded.config, base);
    if !unreadable.is_empty() {
        return Err(ConfigError {
            file: path.to_path_buf(),
            problems: unreadable
                .into_iter()
                .map(|(key, message)| ConfigProblem { line_col: locate_key(&text, &key), key: Some(key), message })
                .collect(),
        });
    }
    Ok(loaded)
}

/// A valid config from `text` as if read from `/etc/heldar/config.toml`, for unit tests.
#[cfg(test)]
pub fn test_config(text: &str) -> LoadedConfig {
    load_str(text, Path::new("/etc/heldar/config.toml"), Path::new("/"), || None).expect("a valid test config")
}

/// Parses and validates config `text` read from `path`; relative paths resolve against `base`.
pub fn load_str(
    text: &str,
    path: &Path,
    base: &Path,
    hostname: impl FnOnce() -> Option<String>,
) -> Result<LoadedConfig, ConfigError> {
    let config: Config = parse_toml(text, path)?;
    // Problems found in this file carry the line of their key, like every other problem.
    let located = |mut e: ConfigError| {
        if e.file == path {
            for problem in e.problems.iter_mut().filter(|p| p.line_col.is_none()) {
                problem.line_col = problem.key.as_deref().and_then(|key| locate_key(text, key));
            }
        }
        e
    };
    let board = load_board(&config.node.board, path, base).map_err(located)?;
    let node_id = match &config.node.id {
        Some(id) => id.clone(),
        None => hostname().ok_or_else(|| {
            located(ConfigError::single(path, Some("node.id"), "is not set and the hostname cannot be read: set it"))
        })?,
    };
    let problems = validate::validate(&config, &node_id, &board.limits);
    if !problems.is_empty() {
        return Err(ConfigError {
            file: path.to_path_buf(),
            problems: problems
                .into_iter()
                .map(|p| ConfigProblem { line_col: locate_key(text, &p.key), key: Some(p.key), message: p.message })
                .collect(),
        });
    }
    let base = absolute(base);
    let data_dir = base.join(&config.node.data_dir);
    let recordings_dir = match &config.storage.recordings_dir {
        Some(dir) => base.join(dir),
        None => data_dir.join("recordings"),
    };
    Ok(LoadedConfig { path: path.to_path_buf(), config, node_id, board, data_dir, recordings_dir })
}

fn absolute(path: &Path) -> PathBuf {
    if path.as_os_str().is_empty() {
        return std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    }
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn load_board(board: &str, config_path: &Path, base: &Path) -> Result<BoardProfile, ConfigError> {
    let (text, file) = if board::is_board_path(board) {
        let file = base.join(board);
        let text = std::fs::read_to_string(&file).map_err(|e| {
            ConfigError::single(config_path, Some("node.board"), format!("cannot read {}: {e}", file.display()))
        })?;
        (text, file)
    } else {
        let text = board::builtin_board(board).ok_or_else(|| {
            ConfigError::single(
                config_path,
                Some("node.board"),
                format!(
                    "{board:?} is no known board (known: {}; or give a path to a profile file)",
                    board::builtin_board_names()
                ),
            )
        })?;
        (text.to_string(), PathBuf::from(format!("board/{board}.toml")))
    };
    let profile: BoardProfile = parse_toml(&text, &file)?;
    let violations = profile.limits.ceiling_violations();
    if !violations.is_empty() {
        return Err(ConfigError {
            problems: violations
                .into_iter()
                .map(|(key, message)| ConfigProblem {
                    line_col: locate_key(&text, key),
                    key: Some(key.to_string()),
                    message,
                })
                .collect(),
            file,
        });
    }
    Ok(profile)
}

/// Deserializes TOML `text`, turning any error into one that names the key path and position.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    let deserializer = toml::de::Deserializer::parse(text).map_err(|e| toml_error(text, path, None, &e))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let key = (key != ".").then_some(key);
        toml_error(text, path, key, e.inner())
    })
}

fn toml_error(text: &str, path: &Path, key: Option<String>, error: &toml::de::Error) -> ConfigError {
    let line_col = error
        .span()
        .map(|span| line_col(text, span.start))
        .or_else(|| key.as_deref().and_then(|k| locate_key(text, k)));
    ConfigError {
        file: path.to_path_buf(),
        problems: vec![ConfigProblem { key, line_col, message: error.message().trim().to_string() }],
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Finds where key path `key` (e.g. `camera[1].zone[0].polygon`) is in `text`.
fn locate_key(text: &str, key: &str) -> Option<(usize, usize)> {
    let root = DeTable::parse(text).ok()?;
    let mut table: &DeTable = root.get_ref();
    let mut span = None;
    let mut value: Option<&DeValue> = None;
    for part in key.split('.') {
        let (name, indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if let Some(DeValue::Table(t)) = value {
            table = t;
        } else if value.is_some() {
            break;
        }
        let (_, entry) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name)?;
        span = Some(entry.span());
        let mut current = entry.get_ref();
        for index in indices.split(['[', ']']).filter(|s| !s.is_empty()) {
            let index: usize = index.parse().ok()?;
            match current {
                DeValue::Array(items) => {
                    let item = items.get(index)?;
                    span = Some(item.span());
                    current = item.get_ref();
                }
                _ => break,
            }
        }
        value = Some(current);
    }
    span.map(|s| line_col(text, s.start))
}

/// The machine's hostname, if readable.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
