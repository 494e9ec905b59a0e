#!/usr/bin/env bash
# The Debian package, end to end: builds the amd64 .deb with scripts/package,
# checks its contents, control fields and lintian, installs it with dpkg,
# checks what the install gives (user, directories, enabled unit, a config
# `heldar-edge check` accepts, a service the heldar user can run), then
# removes and purges it and checks what each leaves behind.
#
# Runs as root (CI does). It refuses to run where heldar-edge, the heldar
# user or /etc/heldar or /var/lib/heldar already exist, and undoes
# everything it did on the way out, also when a check fails. Depends that
# are missing are installed with apt and stay (scripts/setup installs them
# anyway). Without systemd as PID 1 nothing is started by the package; the
# unit is only enabled.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() {
  echo "deb.sh: FAIL: $*" >&2
  exit 1
}
step() { echo "== deb.sh: $*"; }

[ "$(id -u)" -eq 0 ] || fail "run as root: it installs and removes a package"
for tool in dpkg dpkg-deb lintian apt-get readelf; do
  command -v "$tool" >/dev/null || fail "$tool missing (scripts/setup test installs it)"
done

# Refuse to touch a machine that has a heldar-edge of its own.
status=$(dpkg-query -W -f='${db:Status-Abbrev}' heldar-edge 2>/dev/null || true)
[ -z "$status" ] || [ "${status:0:2}" = "un" ] || fail "heldar-edge is already installed here (dpkg: $status)"
for path in /etc/heldar /var/lib/heldar /usr/bin/heldar-edge; do
  [ ! -e "$path" ] || fail "$path exists already; this test must not touch it"
done
! getent passwd heldar >/dev/null || fail "user heldar exists already"
! getent group heldar >/dev/null || fail "group heldar exists already"

work=$(mktemp -d)
cleanup() {
  local rc=$?
  set +e
  if dpkg-query -W -f='${db:Status-Abbrev}' heldar-edge 2>/dev/null | grep -qv '^un'; then
    dpkg --purge heldar-edge >/dev/null 2>&1
  fi
  rm -rf /var/lib/heldar /etc/heldar "$work"
  getent passwd heldar >/dev/null && userdel heldar
  getent group heldar >/dev/null && groupdel heldar
  [ "$rc" -eq 0 ] || echo "deb.sh: failed; the machine is cleaned up" >&2
  exit "$rc"
}
trap cleanup EXIT

cargo_version=$(awk -F'"' '/^\[/ { p = ($0 == "[package]") } p && /^version *=/ { print $2; exit }' Cargo.toml)
version=${cargo_version/-/\~}
deb=dist/heldar-edge_${version}_amd64.deb

step "build"
rm -f "$deb"
scripts/package deb amd64
[ -f "$deb" ] || fail "scripts/package did not write $deb"

step "contents"
# Every file and directory, with mode and owner; nothing more, nothing less.
expected=$(
  {
    echo "drwxr-xr-x root/root ./"
    for d in etc etc/heldar lib lib/systemd lib/systemd/system usr usr/bin usr/share usr/share/doc \
      usr/share/doc/heldar-edge usr/share/doc/heldar-edge/examples usr/share/doc/heldar-edge/mosquitto \
      usr/share/heldar usr/share/heldar/board \
      usr/share/man usr/share/man/man1; do
      echo "drwxr-xr-x root/root ./$d/"
    done
    echo "-rwxr-xr-x root/root ./usr/bin/heldar-edge"
    for f in etc/heldar/config.toml lib/systemd/system/heldar-edge.service usr/share/doc/heldar-edge/changelog.gz \
      usr/share/doc/heldar-edge/copyright usr/share/man/man1/heldar-edge.1.gz; do
      echo "-rw-r--r-- root/root ./$f"
    done
    for f in docs/*.md docs/mosquitto/*; do
      [ "$f" = docs/development.md ] || echo "-rw-r--r-- root/root ./usr/share/doc/heldar-edge/${f#docs/}"
    done
    for f in board/*.toml; do echo "-rw-r--r-- root/root ./usr/share/heldar/board/${f#board/}"; done
    for f in packaging/systemd/*.conf; do echo "-rw-r--r-- root/root ./usr/share/doc/heldar-edge/examples/${f##*/}"; done
  } | LC_ALL=C sort
)
actual=$(dpkg-deb -c "$deb" | awk '{ print $1, $2, $6 }' | LC_ALL=C sort)
[ "$actual" = "$expected" ] || fail "contents differ (- expected, + actual):
$(diff <(echo "$expected") <(echo "$actual") | grep '^[<>]' | sed 's/^</-/; s/^>/+/')"

dpkg-deb -x "$deb" "$work/x"
dpkg-deb -e "$deb" "$work/DEBIAN"
cmp -s "$work/x/lib/systemd/system/heldar-edge.service" packaging/systemd/heldar-edge.service || fail "the unit is not packaging/systemd/heldar-edge.service"
cmp -s "$work/x/etc/heldar/config.toml" packaging/config.toml || fail "the config is not packaging/config.toml"
cmp -s "$work/x/usr/share/doc/heldar-edge/copyright" packaging/deb/copyright || fail "the copyright file is not packaging/deb/copyright"
# The RK3588 drop-in the docs name, by its installed path.
rk3588=usr/share/doc/heldar-edge/examples/rk3588-devices.conf
cmp -s "$work/x/$rk3588" packaging/systemd/rk3588-devices.conf || fail "/$rk3588 is not packaging/systemd/rk3588-devices.conf"
readelf -h "$work/x/usr/bin/heldar-edge" | grep -q 'Machine: *Advanced Micro Devices X86-64' || fail "binary is not x86-64"
! readelf -S "$work/x/usr/bin/heldar-edge" | grep -Eq '\.(symtab|debug_)' || fail "binary is not stripped"
[ "$(cat "$work/DEBIAN/conffiles")" = /etc/heldar/config.toml ] || fail "conffiles: $(cat "$work/DEBIAN/conffiles")"
for script in postinst prerm postrm; do
  [ -x "$work/DEBIAN/$script" ] || fail "no executable $script"
done

step "control"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = heldar-edge ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$version" ] || fail "Version: $(field Version), Cargo.toml says $cargo_version"
[ "$(field Architecture)" = amd64 ] || fail "Architecture: $(field Architecture)"
[ "$(field Recommends)" = "mosquitto, rclone" ] || fail "Recommends: $(field Recommends)"
[ "$(field Section)" = video ] || fail "Section: $(field Section)"
[ "$(field Priority)" = optional ] || fail "Priority: $(field Priority)"
field Maintainer | grep -Eq '^[^<]+ <[^@>]+@[^>]+>$' || fail "Maintainer: $(field Maintainer)"
[ "$(field Description | wc -l)" -ge 3 ] || fail "Description needs a synopsis and an extended text"
depends=$(field Depends)
echo "Depends: $depends"
[[ $depends =~ ^adduser,\ ffmpeg,\ libc6\ \(\>=\ 2\.[0-9]+\),\ libgcc-s1\ \(\>=\ [0-9.]+\)$ ]] || fail "Depends: $depends"
# The libc6 version is the newest GLIBC_ version the binary references.
glibc=$(readelf -V --wide "$work/x/usr/bin/heldar-edge" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
[[ $depends == *"libc6 (>= $glibc)"* ]] || fail "Depends: $depends, but the binary needs GLIBC_$glibc"

step "lintian"
# No errors or warnings; info tags are shown.
lintian --fail-on error,warning --display-info "$deb" 2> >(grep -v 'running with root privileges' >&2) \
  || fail "lintian reports errors or warnings"

step "dpkg -i"
missing=()
for dep in $(field Depends | sed 's/([^)]*)//g; s/,/ /g'); do
  dpkg-query -W -f='${db:Status-Abbrev}' "$dep" 2>/dev/null | grep -q '^ii' || missing+=("$dep")
done
if ((${#missing[@]})); then
  echo "deb.sh: installing the missing Depends: ${missing[*]} (they stay installed)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
dpkg -i "$deb"
[ "$(dpkg-query -W -f='${db:Status-Abbrev}' heldar-edge)" = "ii " ] || fail "not installed: $(dpkg-query -W -f='${db:Status-Abbrev}' heldar-edge)"
dpkg --verify heldar-edge || fail "dpkg --verify: installed files differ from the package"
[ -x /usr/bin/heldar-edge ] || fail "/usr/bin/heldar-edge missing"
cmp -s "/$rk3588" packaging/systemd/rk3588-devices.conf || fail "/$rk3588 is not installed"

step "the installed node"
/usr/bin/heldar-edge check -c /etc/heldar/config.toml || fail "heldar-edge check rejects the installed config"
entry=$(getent passwd heldar) || fail "no user heldar"
IFS=: read -r _ _ uid gid _ home shell <<<"$entry"
[ "$uid" -lt 1000 ] || fail "heldar is not a system user (uid $uid)"
[ "$(getent group heldar | cut -d: -f3)" = "$gid" ] || fail "heldar's primary group is not heldar"
[ "$home" = /var/lib/heldar ] || fail "heldar's home is $home"
[ "$shell" = /usr/sbin/nologin ] || fail "heldar's shell is $shell"
id -nG heldar | tr ' ' '\n' | grep -qx video || fail "heldar is not in group video: $(id -nG heldar)"
[ "$(stat -c '%U:%G %a' /var/lib/heldar)" = "heldar:heldar 750" ] || fail "/var/lib/heldar is $(stat -c '%U:%G %a' /var/lib/heldar)"
# Enabled the way deb-systemd-helper does, with or without a running systemd.
[ -L /etc/systemd/system/multi-user.target.wants/heldar-edge.service ] || fail "the unit is not enabled"
# The installed unit as systemd would see it, ExecStart binary and (where
# man is installed) its Documentation= man page included.
man=--man=no
command -v man >/dev/null && man=--man=yes
if ! out=$(systemd-analyze verify "$man" /lib/systemd/system/heldar-edge.service 2>&1) || [ -n "$out" ]; then
  fail "systemd-analyze verify on the installed unit: $out"
fi

# The service as the heldar user, on the packaged config, can open its index
# in /var/lib/heldar. The broker is pointed at the discard port: a broker on
# 1883 (scripts/run) must not see a second client with its node id.
sed 's#^url = .*#url = "mqtt://127.0.0.1:9"#' /etc/heldar/config.toml >"$work/run.toml"
chmod 0644 "$work/run.toml"
chmod 0755 "$work"
rc=0
runuser -u heldar -- timeout -s TERM 5 /usr/bin/heldar-edge run -c "$work/run.toml" >"$work/run.log" 2>&1 || rc=$?
[ "$rc" -eq 124 ] || fail "heldar-edge run as heldar exited with $rc before it was stopped:
$(tail -20 "$work/run.log")"
[ "$(stat -c %U /var/lib/heldar/index.db 2>/dev/null)" = heldar ] || fail "no index.db of heldar's in /var/lib/heldar:
$(tail -20 "$work/run.log")"

# A recording and an admin's edit of the config, both to be kept by remove.
install -d -o heldar -g heldar /var/lib/heldar/recordings/cam/2026-01-01
echo fake >/var/lib/heldar/recordings/cam/2026-01-01/000000.mp4
echo "# edited by the admin" >>/etc/heldar/config.toml
config_sum=$(md5sum </etc/heldar/config.toml)

step "dpkg -r"
dpkg -r heldar-edge
[ "$(dpkg-query -W -f='${db:Status-Abbrev}' heldar-edge)" = "rc " ] || fail "after remove: $(dpkg-query -W -f='${db:Status-Abbrev}' heldar-edge)"
for path in /usr/bin/heldar-edge /lib/systemd/system/heldar-edge.service /usr/share/heldar /usr/share/doc/heldar-edge; do
  [ ! -e "$path" ] || fail "remove left $path"
done
[ "$(md5sum </etc/heldar/config.toml)" = "$config_sum" ] || fail "remove did not keep the edited /etc/heldar/config.toml"
[ -f /var/lib/heldar/recordings/cam/2026-01-01/000000.mp4 ] || fail "remove deleted the recordings"
[ -f /var/lib/heldar/index.db ] || fail "remove deleted the index"

step "dpkg --purge"
dpkg --purge heldar-edge
status=$(dpkg-query -W -f='${db:Status-Abbrev}' heldar-edge 2>/dev/null || true)
[ -z "$status" ] || [ "${status:0:2}" = un ] || fail "after purge: dpkg status $status"
[ ! -e /etc/heldar/config.toml ] || fail "purge left /etc/heldar/config.toml"
[ ! -e /etc/heldar ] || fail "purge left /etc/heldar: $(ls -A /etc/heldar)"
[ ! -e /etc/systemd/system/multi-user.target.wants/heldar-edge.service ] || fail "purge left the unit enabled"
# Footage survives even a purge (see packaging/deb/postrm).
[ -f /var/lib/heldar/recordings/cam/2026-01-01/000000.mp4 ] || fail "purge deleted the recordings"

echo "deb.sh: ok"
