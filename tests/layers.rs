//! The shape of the tree: the layers written down once, in docs/development.md,
//! hold in `src/` (a module uses only modules of lower layers, so no import
//! cycle between top-level modules can exist), and no file or function grows
//! past what one reader takes in at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Longest file in `src/`, in lines.
const MAX_FILE_LINES: usize = 450;
/// Longest function in `src/`, in lines.
const MAX_FN_LINES: usize = 80;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Module name → layer number, from the `## Layers` table of docs/development.md
/// (`| 3 | `outbox` | …`).
fn documented_layers() -> BTreeMap<String, usize> {
    let docs = std::fs::read_to_string(root().join("docs/development.md")).expect("docs/development.md");
    let section = docs.split("\n## Layers").nth(1).expect("docs/development.md has a `## Layers` section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let mut layers = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Ok(layer) = cells[1].parse::<usize>() else { continue };
        for module in cells[2].split(',').map(|m| m.trim().trim_matches('`')) {
            assert!(layers.insert(module.to_string(), layer).is_none(), "{module} is in two layers");
        }
    }
    assert!(layers.len() > 10, "the layer table lists only {} modules: is the parser still right?", layers.len());
    layers
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The top-level module a file of `src/` belongs to (`None` for lib.rs and main.rs).
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(root().join("src")).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    if relative.components().count() == 1 && matches!(first, "lib.rs" | "main.rs") {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_string())
}

/// Every top-level module named as `crate::<name>` or in `crate::{<name>, …}` in code
/// (comments left out).
fn used_modules(text: &str) -> Vec<(usize, String)> {
    let name_at = |code: &str| -> String { code.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect() };
    let mut used = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + 7..];
            let names = match rest.strip_prefix('{') {
                // The first level of a group: `crate::{a, b::c, d::{e, f}}`.
                Some(group) => {
                    let mut depth = 0;
                    let mut names = vec![name_at(group)];
                    for (i, c) in group.char_indices() {
                        match c {
                            '{' => depth += 1,
                            '}' if depth == 0 => break,
                            '}' => depth -= 1,
                            ',' if depth == 0 => names.push(name_at(group[i + 1..].trim_start())),
                            _ => {}
                        }
                    }
                    names
                }
                None => vec![name_at(rest)],
            };
            used.extend(names.into_iter().filter(|name| !name.is_empty()).map(|name| (n + 1, name)));
        }
    }
    used
}

#[test]
fn every_module_uses_only_lower_layers() {
    let layers = documented_layers();
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).expect("src/lib.rs");
    for module in lib.lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|m| m.trim_end_matches(';')) {
        assert!(layers.contains_key(module), "module {module} is in no layer of docs/development.md: add it");
    }
    let mut problems = Vec::new();
    for file in rust_files(&root().join("src")) {
        let Some(module) = module_of(&file) else { continue };
        let own = layers[&module];
        let text = std::fs::read_to_string(&file).expect("source");
        for (line, used) in used_modules(&text) {
            if used == module {
                continue;
            }
            match layers.get(&used) {
                Some(&layer) if layer < own => {}
                Some(&layer) => problems.push(format!(
                    "{}:{line}: {module} (layer {own}) uses {used} (layer {layer}): only lower layers may be used",
                    file.display()
                )),
                None => problems.push(format!("{}:{line}: {used} is in no layer", file.display())),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_layer_check_catches_an_upward_use() {
    let used =
        used_modules("use crate::service::Node; // crate::cli in a comment\nlet x = crate::store::Store::open();");
    assert_eq!(used, [(1, "service".to_string()), (2, "store".to_string())]);
}

/// (name, first line, length) of every `fn` whose body closes at its own indentation.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let signature = ["pub ", "pub(crate) ", "async ", "const ", "unsafe "]
            .iter()
            .fold(trimmed, |rest, prefix| rest.strip_prefix(prefix).unwrap_or(rest));
        let signature = signature.strip_prefix("async ").unwrap_or(signature);
        let Some(name) = signature.strip_prefix("fn ") else { continue };
        let name: String = name.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let close = format!("{indent}}}");
        if let Some(end) = lines[i + 1..].iter().position(|l| *l == close) {
            found.push((name, i + 1, end + 2));
        }
    }
    found
}

#[test]
fn no_file_or_function_is_too_long() {
    let mut problems = Vec::new();
    for file in rust_files(&root().join("src")) {
        let text = std::fs::read_to_string(&file).expect("source");
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            problems.push(format!("{}: {lines} lines (at most {MAX_FILE_LINES}): split it", file.display()));
        }
        for (name, line, length) in functions(&text) {
            if length > MAX_FN_LINES {
                problems.push(format!(
                    "{}:{line}: fn {name} is {length} lines (at most {MAX_FN_LINES}): split it",
                    file.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_length_check_measures_functions() {
    let text = "fn a() {\n    x();\n}\n\nimpl T {\n    pub async fn b(&self) {\n        y();\n        z();\n    }\n}\n";
    assert_eq!(functions(text), [("a".to_string(), 1, 3), ("b".to_string(), 6, 4)]);
}
