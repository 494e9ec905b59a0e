//! The reference docs stay in step with the code: every key of the config and
//! board structs is in docs/config.md, every topic the code builds is in
//! docs/mqtt.md, every command in docs/commands.md, and what the service sends
//! validates against the JSON Schemas in sdk/schema/.

use std::path::Path;

fn read(relative: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(relative))
        .unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

/// The TOML key of every field of every `pub struct` in `source` that is not itself a
/// table (a field whose type names another `…Config`, or a profile's `limits`/`ffmpeg`).
fn keys(source: &str) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    let (mut strukt, mut rename) = (String::new(), None::<String>);
    for raw in source.lines() {
        let line = raw.trim();
        if let Some(rest) = line.strip_prefix("pub struct ") {
            strukt = rest.split([' ', '{', '(']).next().unwrap_or_default().to_string();
            continue;
        }
        if raw.starts_with('}') || line.starts_with("pub enum ") || line.starts_with("impl") {
            strukt.clear();
            continue;
        }
        if strukt.is_empty() || line.starts_with("///") {
            continue;
        }
        if line.starts_with("#[serde(") && line.contains("rename = \"") {
            rename = line.split("rename = \"").nth(1).and_then(|r| r.split('"').next()).map(str::to_string);
            continue;
        }
        let Some(field) = line.strip_prefix("pub ") else {
            if !line.starts_with("#[") {
                rename = None;
            }
            continue;
        };
        let Some((name, ty)) = field.split_once(':') else { continue };
        if name.contains(' ') || name.contains('(') {
            continue;
        }
        let table = ty.contains("Config") || ty.contains("BoardLimits") || ty.contains("BoardFfmpeg");
        let key = rename.take().unwrap_or_else(|| name.to_string());
        if !table && strukt != "Config" {
            keys.push((strukt.clone(), key));
        }
    }
    keys
}

#[test]
fn every_config_and_board_key_is_in_the_config_reference() {
    let docs = read("docs/config.md");
    let mut found = 0;
    for file in [
        "src/config/schema/mod.rs",
        "src/config/schema/camera.rs",
        "src/config/schema/schedule.rs",
        "src/config/schema/backup.rs",
        "src/config/schema/http.rs",
        "src/config/board.rs",
    ] {
        for (strukt, key) in keys(&read(file)) {
            assert!(
                docs.contains(&format!("| `{key}` |")),
                "docs/config.md has no row for `{key}` ({strukt} in {file}): add it with its type, default and meaning"
            );
            found += 1;
        }
    }
    assert!(found > 60, "the scan found only {found} keys: is the parser still right?");
}

/// The first level after `P` (or another prefix) of every topic a `format!` in `src/` builds.
fn topic_levels() -> Vec<(String, String)> {
    let mut levels = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for marker in ["\"{}/", "\"{root}/"] {
                for (at, _) in text.match_indices(marker) {
                    let rest = &text[at + marker.len()..];
                    let level: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                    if !level.is_empty() {
                        levels.push((level, path.display().to_string()));
                    }
                }
            }
        }
    }
    levels
}

#[test]
fn every_topic_the_code_builds_is_in_the_mqtt_reference() {
    let docs = read("docs/mqtt.md");
    let rows: Vec<&str> = docs.lines().filter(|l| l.starts_with("| `")).collect();
    let levels = topic_levels();
    assert!(levels.len() > 15, "the scan found only {} topics: is it still right?", levels.len());
    for (level, file) in levels {
        assert!(
            rows.iter().any(|row| row.contains(&format!("/{level}"))),
            "docs/mqtt.md has no topic row with /{level} (built in {file})"
        );
    }
}

#[test]
fn every_command_is_in_the_commands_reference() {
    let docs = read("docs/commands.md");
    for name in heldar_edge::protocol::COMMAND_NAMES {
        assert!(
            docs.contains(&format!("### {name}")) || docs.contains(&format!("/ {name}\n")),
            "docs/commands.md lacks {name}"
        );
    }
    for code in heldar_edge::protocol::ErrorCode::ALL.map(|c| c.as_str()) {
        assert!(docs.contains(&format!("| `{code}` |")), "docs/commands.md lacks error code {code}");
    }
}
