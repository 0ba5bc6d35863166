#!/usr/bin/env bash
# Benchmark: N concurrent clients against the release clock2 on loopback; prints a table.
# Usage: scripts/bench-clock2.sh [--clients 1000,5000,10000] [--seconds 5]
#        scripts/bench-clock2.sh --compare go [--rounds 3] [--clients 10000] [--seconds 5]
# With --compare go it builds the book's Go clock2 (scripts/clock2-go, Debian's golang-go)
# and runs both alternately, printing each run and the CPU ratio ours / Go per round.
set -euo pipefail
cd "$(dirname "$0")/.."
compare=""
rounds=3
pass=()
while (($#)); do
  case "$1" in
    --compare) compare="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    *) pass+=("$1"); shift ;;
  esac
done
cargo build --release -q -p clock2 --bins --examples
# Each client is a descriptor here and a descriptor plus a thread in clock2.
ulimit -n "$(ulimit -Hn)"
loadgen=target/release/examples/loadgen
if [ -z "$compare" ]; then
  exec "$loadgen" "${pass[@]}"
fi
if [ "$compare" != go ]; then
  echo "error: --compare takes 'go'" >&2
  exit 2
fi
command -v go >/dev/null 2>&1 || { echo "error: needs go (apt-get install -y golang-go)" >&2; exit 2; }
mkdir -p target/clock2-go
GOCACHE="$PWD/target/clock2-go/cache" GOFLAGS=-mod=mod GO111MODULE=off \
  go build -o target/clock2-go/clock2 scripts/clock2-go/clock2.go
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(go version)"
for round in $(seq 1 "$rounds"); do
  for server in ours go; do
    binary=target/release/clock2
    [ "$server" = go ] && binary=target/clock2-go/clock2
    "$loadgen" --server "$binary" "${pass[@]}" | grep -E '^ +[0-9]' | sed "s/^/round $round $server /"
  done
done | tee /dev/stderr | awk '
  { key = $2 " " $4; cpu[$3 " " key] = $(NF-1); offset[$3 " " key] = $7 }
  END {
    for (k in cpu) if (k ~ /^ours /) {
      split(k, part, " "); g = "go " part[2] " " part[3]
      if (g in cpu && cpu[g] > 0)
        printf "round %s, %s clients: CPU ours %s%% / Go %s%% = %.2f; offset mean ours %s / Go %s ms\n",
          part[2], part[3], cpu[k], cpu[g], cpu[k] / cpu[g], offset[k], offset[g]
    }
  }' | sort
