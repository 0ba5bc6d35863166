#!/usr/bin/env bash
# The Debian package, end to end, as root: build it with cargo-deb (installed when missing),
# install it with dpkg, check the shipped config with the installed binary, look at what it
# installed, and purge it. Prints one closing line: "package: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ] || ! command -v dpkg >/dev/null 2>&1; then
  echo "package: skipped (needs root and dpkg)" >&2
  exit 0
fi
if dpkg -s ftpd >/dev/null 2>&1; then
  # Left by an earlier run that was killed: ours carries this maintainer; anything else is not
  # ours to remove.
  if dpkg -s ftpd | grep -q '^Maintainer: gopl network tools'; then
    dpkg --purge ftpd >/dev/null
  else
    echo "package: another ftpd package is installed here; not touching it" >&2
    exit 1
  fi
fi
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked -q
cargo build --release -q -p ftpd
mkdir -p target/packaging
target/release/ftpd --man | gzip -9n > target/packaging/ftpd.1.gz
target/release/ftpd --completions bash > target/packaging/ftpd.bash
deb=$(cargo deb -p ftpd --no-build -q --output target/packaging/ 2>/dev/null | tail -1)
[ -f "$deb" ] || deb=$(ls -t target/packaging/*.deb | head -1)

passed=0
failed=0
check() {
  local what=$1
  shift
  if "$@" >/tmp/ftpd-package-check.log 2>&1; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "package check failed: $what" >&2
    cat /tmp/ftpd-package-check.log >&2
  fi
}
cleanup() { dpkg --purge ftpd >/dev/null 2>&1 || true; }
trap cleanup EXIT

check "dpkg -i installs it" dpkg -i "$deb"
check "the service user exists" getent passwd ftpd
check "the installed ftpd accepts the shipped config" /usr/bin/ftpd check-config /etc/ftpd/ftpd.toml
check "the units are installed" test -f /lib/systemd/system/ftpd.service -a -f /lib/systemd/system/ftpd.socket
check "the man page is installed" sh -c 'zcat /usr/share/man/man1/ftpd.1.gz | grep -q Seconds'
check "the logrotate rule is installed" test -f /etc/logrotate.d/ftpd
check "dpkg --purge removes it" dpkg --purge ftpd
check "the binary is gone" test ! -e /usr/bin/ftpd
trap - EXIT
echo "package: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
