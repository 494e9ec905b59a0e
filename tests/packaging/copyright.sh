#!/usr/bin/env bash
# packaging/deb/copyright, the .deb's copyright file (scripts/copyright writes
# it with cargo-about; CI does not have cargo-about, so this checks the
# committed file instead):
#   * every crate of Cargo.lock but heldar-edge itself, by name and version,
#     has a Files paragraph (vendor/NAME-VERSION/*), and no other crate has;
#   * each paragraph has Copyright and License lines;
#   * it is well-formed DEP-5: a Format header, and every licence name a
#     License field uses has its own License paragraph with a text.
# That the package ships it, and lintian's view of it, is deb.sh's business.
set -euo pipefail
cd "$(dirname "$0")/../.."

[ -f packaging/deb/copyright ] || { echo "copyright.sh: packaging/deb/copyright is missing: run scripts/copyright" >&2; exit 1; }
python3 - packaging/deb/copyright Cargo.lock <<'EOF'
import re, sys, tomllib

path, lock = sys.argv[1], sys.argv[2]
errors = []
with open(path, encoding="utf-8") as f:
    text = f.read()


def paragraphs(text):
    """deb822 paragraphs: {field: value}, continuation lines joined with newlines."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        fields, name = {}, None
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and name:
                fields[name] += "\n" + line[1:]
            elif ":" in line and not line.startswith("#"):
                name, value = line.split(":", 1)
                if name in fields:
                    errors.append(f"field {name} twice in one paragraph: {block.splitlines()[0]}")
                fields[name] = value.strip()
            else:
                errors.append(f"not a field: {line!r}")
        out.append(fields)
    return out


header, *rest = paragraphs(text)
if header.get("Format") != "https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/":
    errors.append("the first paragraph has no DEP-5 Format field")

files = [p for p in rest if "Files" in p]
standalone = {p["License"].split("\n")[0]: p["License"] for p in rest if "Files" not in p and "License" in p}
crates = {}
for p in files:
    where = p["Files"]
    for key in ("Copyright", "License"):
        if not p.get(key, "").strip():
            errors.append(f"Files: {where}: no {key}")
    match = re.fullmatch(r"vendor/(.+)/\*", where)
    if match:
        crates[match.group(1)] = p
    # Every licence named has a License paragraph of its own, with a text.
    expression = p.get("License", "").split("\n")[0]
    for name in re.split(r",?\s+(?:and|or)\s+", expression):
        if name not in standalone:
            errors.append(f"Files: {where}: no License paragraph for {name!r}")
for name, value in standalone.items():
    if "\n" not in value:
        errors.append(f"License: {name}: no text")

with open(lock, "rb") as f:
    packages = tomllib.load(f)["package"]
want = {f"{p['name']}-{p['version']}" for p in packages if "source" in p}
# The workspace's own crate has no source; it is the "Files: *" paragraph.
for crate in sorted(want - crates.keys()):
    errors.append(f"no paragraph for the crate {crate} of Cargo.lock")
for crate in sorted(crates.keys() - want):
    if not any(crate.startswith(w + "/") for w in want):
        errors.append(f"a paragraph for {crate}, which is not in Cargo.lock")
if not any(p["Files"] == "*" for p in files):
    errors.append("no Files: * paragraph for heldar-edge itself")

for e in errors:
    print(f"copyright.sh: {path}: {e}", file=sys.stderr)
if errors:
    print("copyright.sh: run scripts/copyright (it needs cargo-about) and commit the result", file=sys.stderr)
    sys.exit(1)
print(f"copyright.sh: {path}: {len(want)} crates of Cargo.lock, {len(standalone)} licences: ok")
EOF
