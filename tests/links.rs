//! Every file the prose points at exists: relative markdown links (and their
//! `#anchors`), paths of this tree named in the text (`docs/config.md`,
//! `board/README.md`, `scripts/package`, …) and the installed paths the
//! packages fill from this tree (`/usr/share/doc/heldar-edge/config.md` is
//! `docs/config.md`). Read: every `*.md` of the tree, the two default configs
//! and the systemd unit.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Top-level directories of the tree: a bare path starting with one of them is a file reference.
const TREE: [&str; 10] =
    ["benches", "board", "docs", "migrations", "packaging", "scripts", "sdk", "src", "tests", "yocto"];

/// Where the packages install files from this tree (scripts/package, the Yocto recipe).
const INSTALLED: [(&str, &str); 4] = [
    ("/usr/share/doc/heldar-edge/examples/", "packaging/systemd/"),
    ("/usr/share/doc/heldar-edge/", "docs/"),
    ("/usr/share/heldar/board/", "board/"),
    ("/etc/heldar/config.toml", "packaging/config.toml"),
];

/// Files made by the package build, not in the tree.
const BUILT: [&str; 2] = ["/usr/share/doc/heldar-edge/changelog.gz", "/usr/share/doc/heldar-edge/copyright"];

/// The files whose references are checked, relative to the root.
fn documents() -> Vec<PathBuf> {
    let mut found = vec![
        PathBuf::from("config.toml"),
        PathBuf::from("packaging/config.toml"),
        PathBuf::from("packaging/systemd/heldar-edge.service"),
    ];
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(root().join(&dir)).expect("read_dir").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Build output, local state and tool caches, not the tree's own files.
            if name.starts_with('.')
                || name.ends_with(".egg-info")
                || ["target", "var", "dist", "node_modules"].contains(&name.as_str())
            {
                continue;
            }
            let path = dir.join(&name);
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if name.ends_with(".md") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut seen: Vec<String> = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if let Some(heading) = line.strip_prefix('#').map(|h| h.trim_start_matches('#')).filter(|h| h.starts_with(' '))
        {
            let base = slug(heading);
            // Repeated headings get -1, -2, … as on GitHub.
            let n = seen
                .iter()
                .filter(|s| {
                    **s == base || s.strip_prefix(&format!("{base}-")).is_some_and(|r| r.parse::<u32>().is_ok())
                })
                .count();
            seen.push(if n == 0 { base } else { format!("{base}-{n}") });
        }
    }
    seen
}

/// The targets of `[text](target)` links outside fenced code blocks, with their line numbers.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((n + 1, after[..end].split_whitespace().next().unwrap_or_default().to_string()));
            rest = &after[end..];
        }
    }
    out
}

/// Paths of this tree (or installed from it) named anywhere in `text`, with their line numbers.
fn references(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for word in line.split(|c: char| c.is_whitespace() || "`'\"()[],;=".contains(c)) {
            let word = word.trim_end_matches(['.', ':']);
            // Placeholders and globs (board/<name>.toml, tests/packaging/*.sh) name no one file.
            if word.is_empty() || word.contains(['<', '>', '*', '{', '}', '$', '…', '|']) {
                continue;
            }
            let word = word.strip_prefix("file://").unwrap_or(word);
            // An error position: /etc/heldar/config.toml:7:15.
            let word = match word.split_once(':') {
                Some((path, position)) if position.chars().all(|c| c.is_ascii_digit() || c == ':') => path,
                _ => word,
            };
            if word.contains("://") {
                continue;
            }
            let top = word.split('/').next().unwrap_or_default();
            let of_tree = word.contains('/') && TREE.contains(&top);
            let installed = INSTALLED.iter().any(|(prefix, _)| word.starts_with(prefix) && word.len() > prefix.len())
                || INSTALLED.iter().any(|(prefix, _)| word == *prefix);
            if of_tree || installed || (word.ends_with(".md") && !word.starts_with('/')) {
                out.push((n + 1, word.to_string()));
            }
        }
    }
    out
}

/// The file of this tree a reference names: relative to the document's directory or
/// the root, or an installed path mapped back to its source.
fn resolve(document: &Path, reference: &str) -> Option<PathBuf> {
    if BUILT.contains(&reference) {
        return Some(root().join("Cargo.toml"));
    }
    if let Some((prefix, source)) = INSTALLED.iter().find(|(prefix, _)| reference.starts_with(prefix)) {
        let path = root().join(format!("{source}{}", &reference[prefix.len()..]));
        return path.exists().then_some(path);
    }
    let dir = root().join(document.parent().unwrap_or(Path::new("")));
    [dir.join(reference), root().join(reference)].into_iter().find(|p| p.exists())
}

#[test]
fn every_link_and_file_reference_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for document in documents() {
        let text = std::fs::read_to_string(root().join(&document)).expect("document");
        let is_markdown = document.extension().is_some_and(|e| e == "md");
        if is_markdown {
            for (line, target) in links(&text) {
                if target.contains(':') || target.is_empty() {
                    continue; // https:, mailto:
                }
                checked += 1;
                let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
                let (path, markdown) = if file.is_empty() {
                    (Some(root().join(&document)), text.clone())
                } else {
                    let path = root().join(document.parent().unwrap_or(Path::new(""))).join(file);
                    let markdown = std::fs::read_to_string(&path).unwrap_or_default();
                    (path.exists().then_some(path), markdown)
                };
                if path.is_none() {
                    broken.push(format!("{}:{line}: link to {target}: no such file", document.display()));
                } else if !anchor.is_empty()
                    && (file.is_empty() || file.ends_with(".md"))
                    && !anchors(&markdown).iter().any(|a| a == anchor)
                {
                    broken
                        .push(format!("{}:{line}: link to {target}: no heading with that anchor", document.display()));
                }
            }
        }
        for (line, reference) in references(&text) {
            checked += 1;
            if std::env::var_os("LINKS_DEBUG").is_some() {
                eprintln!("{}:{line}: {reference}", document.display());
            }
            if resolve(&document, &reference).is_none() {
                broken.push(format!("{}:{line}: {reference}: no such file in the tree", document.display()));
            }
        }
    }
    assert!(checked > 100, "only {checked} links and references found: is the scan still right?");
    assert!(broken.is_empty(), "broken links or file references:\n{}", broken.join("\n"));
}

#[test]
fn the_scan_sees_what_it_should() {
    assert_eq!(slug("P/stats"), "pstats");
    assert_eq!(slug("`camera.zone`"), "camerazone");
    assert_eq!(slug("Workers: frames and detections"), "workers-frames-and-detections");
    assert_eq!(anchors("# A\n## A\n```\n# not\n```\n### B c\n"), ["a", "a-1", "b-c"]);
    assert_eq!(
        links("see [x](a.md#b) and [y](https://e.org), `[z](c)`\n"),
        [(1, "a.md#b".to_string()), (1, "https://e.org".to_string()), (1, "c".to_string())]
    );
    let found: Vec<String> = references(
        "# Every key is described in docs/configuration.md; board/<name>.toml, tests/packaging/*.sh\n\
         `scripts/package deb`, see config.md. file:///usr/share/doc/heldar-edge/config.md /usr/bin/x var/recordings\n",
    )
    .into_iter()
    .map(|(_, r)| r)
    .collect();
    assert_eq!(
        found,
        ["docs/configuration.md", "scripts/package", "config.md", "/usr/share/doc/heldar-edge/config.md"]
    );
    assert!(resolve(Path::new("config.toml"), "docs/configuration.md").is_none());
    assert!(resolve(Path::new("docs/mqtt.md"), "commands.md").is_some());
    assert!(resolve(Path::new("packaging/config.toml"), "/usr/share/doc/heldar-edge/config.md").is_some());
}
