#!/usr/bin/env bash
# `systemd-analyze verify` on packaging/systemd/heldar-edge.service, the unit
# the .deb and the Yocto layer install, alone and with each example drop-in
# (packaging/systemd/*.conf).
#
# verify insists that ExecStart's binary exists, and /usr/bin/heldar-edge is
# not installed on a build machine. --root= would need a whole systemd tree
# (sysinit.target, /bin/kill) inside the root, so instead a copy of the unit
# runs a stand-in executable. Whether the packages install /usr/bin/heldar-edge
# is tests/packaging/deb.sh's business.
#
# verify exits 0 on an unknown key or a value it cannot parse (it logs and
# ignores them), so any output at all is a failure here.
set -euo pipefail
cd "$(dirname "$0")/../.."

unit=packaging/systemd/heldar-edge.service
command -v systemd-analyze >/dev/null || { echo "unit.sh: systemd-analyze missing (apt-get install systemd)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp /bin/true "$tmp/heldar-edge"

# Exactly one ExecStart, and it is the path the packages install.
grep -c '^ExecStart=/usr/bin/heldar-edge ' "$unit" | grep -qx 1 \
  || { echo "unit.sh: $unit: expected one ExecStart=/usr/bin/heldar-edge …" >&2; exit 1; }
sed "s#^ExecStart=/usr/bin/heldar-edge #ExecStart=$tmp/heldar-edge #" "$unit" >"$tmp/heldar-edge.service"

# --man=no: the Documentation= man page is only installed by the .deb.
if ! out=$(systemd-analyze verify --man=no "$tmp/heldar-edge.service" 2>&1) || [ -n "$out" ]; then
  echo "unit.sh: systemd-analyze verify $unit failed:" >&2
  printf '%s\n' "${out//$tmp\//packaging/systemd/}" >&2
  exit 1
fi

# The example drop-ins the packages ship (/usr/share/doc/heldar-edge/examples/),
# each verified as installed beside the unit.
for dropin in packaging/systemd/*.conf; do
  rm -rf "$tmp/heldar-edge.service.d"
  install -D -m 0644 "$dropin" "$tmp/heldar-edge.service.d/${dropin##*/}"
  grep -qx '\[Service\]' "$dropin" || { echo "unit.sh: $dropin: no [Service] section" >&2; exit 1; }
  if ! out=$(systemd-analyze verify --man=no "$tmp/heldar-edge.service" 2>&1) || [ -n "$out" ]; then
    echo "unit.sh: systemd-analyze verify $unit with the drop-in $dropin failed:" >&2
    printf '%s\n' "${out//$tmp\/heldar-edge.service.d\//packaging/systemd/}" >&2
    exit 1
  fi
done

# Properties the service and its users rely on; a line lost in an edit
# would otherwise go unnoticed (verify accepts a unit without them).
# shellcheck disable=SC2016 # $MAINPID is for systemd, not for this shell
for line in Type=notify NotifyAccess=main WatchdogSec=30 Restart=on-failure User=heldar Group=heldar \
  SupplementaryGroups=video StateDirectory=heldar ConfigurationDirectory=heldar ProtectSystem=strict \
  ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes ProtectProc=invisible KillMode=mixed \
  DevicePolicy=closed 'DeviceAllow=char-video4linux rw' 'ExecReload=/bin/kill -HUP $MAINPID' \
  WantedBy=multi-user.target; do
  grep -qxF "$line" "$unit" || { echo "unit.sh: $unit: missing line: $line" >&2; exit 1; }
done
# No hard dependency on the network: a board without one must still record.
if grep -E '^(Wants|Requires|BindsTo)=.*network-online' "$unit"; then
  echo "unit.sh: $unit: must not pull in network-online.target" >&2
  exit 1
fi

echo "unit.sh: $unit and its example drop-ins: ok"
