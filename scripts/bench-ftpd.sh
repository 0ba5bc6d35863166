#!/usr/bin/env bash
# Benchmark: ftpd (and, with --compare vsftpd, vsftpd) over loopback; prints a Markdown table.
# Usage: scripts/bench-ftpd.sh [--compare vsftpd] [--quick] [--rounds 3] [--url ftp://127.0.0.1:2121]
# vsftpd is not installed here: `apt-get install -y vsftpd` first for --compare.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p ftpd -p ftpbench
# 1,000 idle sessions are 1,000 descriptors here and in ftpd (ftpbench raises it too).
ulimit -n "$(ulimit -Hn)"
exec "$target_dir/release/ftpbench" --serve-ours "$target_dir/release/ftpd" "$@"
