#!/usr/bin/env bash
# packaging/config.toml, the /etc/heldar/config.toml of the packages, must be
# valid as shipped, and so must its commented examples once uncommented: the
# examples are what users copy, and a schema change must not leave them
# behind unnoticed.
#
#   tests/packaging/config.sh [BINARY]    (default: builds target/debug/heldar-edge)
set -euo pipefail
cd "$(dirname "$0")/../.."

config=packaging/config.toml
if [ $# -ge 1 ]; then
  bin=$1
else
  cargo build --locked -q --bin heldar-edge
  bin=${CARGO_TARGET_DIR:-target}/debug/heldar-edge
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bin" check -c "$config" >"$tmp/out" 2>&1 || { cat "$tmp/out" >&2; echo "config.sh: $config is invalid" >&2; exit 1; }
grep -q '^  cameras   0 of' "$tmp/out" || { cat "$tmp/out" >&2; echo "config.sh: $config must configure no camera" >&2; exit 1; }

# Uncomment every commented key and table header ("# key = …", "# [table]");
# prose comments start with a capital or a word without " = ". The secret
# files the examples name are created in a temp dir.
sed -E 's/^# ?(\[|[a-z_]+ = )/\1/' "$config" | sed "s#/etc/heldar/#$tmp/#g" >"$tmp/examples.toml"
grep -o "$tmp/[a-z0-9_.-]*" "$tmp/examples.toml" | sort -u | while read -r f; do
  echo secret >"$f"
  chmod 0600 "$f"
done
if ! "$bin" check -c "$tmp/examples.toml" >"$tmp/out" 2>&1; then
  # Uncommenting keeps line numbers: point at the example in the real file.
  sed -e "s#$tmp/examples.toml#$config#g" -e "s#$tmp/#/etc/heldar/#g" "$tmp/out" >&2
  echo "config.sh: $config: the commented examples are invalid once uncommented" >&2
  exit 1
fi
# Each example has to have been picked up, not silently left commented.
for want in '^  cameras   2 of' 'frontdoor +rtsp' 'garage +v4l2' '1 zones' '^  backup    1 destinations, 1 policies' \
  '^  commands  auth hmac, 1 keys'; do
  grep -Eq "$want" "$tmp/out" || { cat "$tmp/out" >&2; echo "config.sh: examples: expected /$want/ in the summary" >&2; exit 1; }
done
echo "config.sh: $config and its examples: ok"
