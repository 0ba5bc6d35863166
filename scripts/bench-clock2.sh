#!/usr/bin/env bash
# Benchmark: N concurrent clients against the release clock2 on loopback; prints a table.
# Usage: scripts/bench-clock2.sh [--clients 1000,5000,10000] [--seconds 5]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p clock2 --bins --examples
# Each client is a descriptor here and a descriptor plus a thread in clock2.
ulimit -n "$(ulimit -Hn)"
exec target/release/examples/loadgen "$@"
