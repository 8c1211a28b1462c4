#!/usr/bin/env bash
# Two collector builds, alternating, draining the same store into a fresh
# VictoriaMetrics: the sink's CPU per 1,000 points of each, run after run
# (BENCHMARKS.md, "InfluxDB sink": how each change of a round was judged).
#
# Usage:
#   KEEP_TMP=1 SERVERS=victoria bench/sink.sh    # prints "kept DIR"
#   bench/sink_ab.sh DIR BIN_A BIN_B [ROUNDS=4] [GZIP=true]
# e.g. BIN_A a copy of target/release/sobre-collector built before a
# change, BIN_B the build after it.
#
# CPU: the whole process, from the scheduler's per-thread run time, at the
# moment the sink has written every sample (start-up included: it is the
# same for both builds). Needs /usr/bin/victoria-metrics, curl, python3.
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,12p "$0" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
KEPT=$1 A=$2 B=$3 ROUNDS=${4:-4} GZIP=${5:-true}
[ -f "$KEPT/seed/data/sobre.sqlite" ] || { echo "$KEPT/seed/data/sobre.sqlite is missing: run bench/sink.sh with KEEP_TMP=1" >&2; exit 1; }
SAMPLES=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from samples").fetchone()[0])' "$KEPT/seed/data/sobre.sqlite")

run() { # NAME BIN -> prints ms of CPU per 1,000 points
  local d=$KEPT/ab-$1 vmp vm pid t0 ms
  rm -rf "$d"; mkdir -p "$d"; cp -r "$KEPT/seed/data" "$d/data"; rm -f "$d/data/sink.cursor"
  vmp=$(free_port)
  /usr/bin/victoria-metrics -storageDataPath="$d/vm" -httpListenAddr="127.0.0.1:$vmp" \
    -retentionPeriod=100y -loggerLevel=ERROR >"$d/vm.log" 2>&1 </dev/null &
  vm=$!; track "$vm"
  wait_http "http://127.0.0.1:$vmp/health" 30
  collector_config "$d" "[sink]
enabled = true
api = \"v2\"
url = \"http://127.0.0.1:$vmp\"
bucket = \"b\"
gzip = $GZIP
batch_max = 5000"
  "$2" --config "$d/collector.toml" >"$d/log" 2>&1 </dev/null &
  pid=$!; track "$pid"
  t0=$SECONDS
  # Polled every 200 ms: the harness must not take the CPU the server needs.
  until [ "$(metric "$HTTP_PORT" sobre_sink_points_written_total)" -ge "$SAMPLES" ] 2>/dev/null; do
    # run() is in a command substitution, a subshell without the EXIT
    # trap: it stops what it started itself.
    kill -0 "$pid" 2>/dev/null || { echo "collector died: $(tail -3 "$d/log")" >&2; stop_pid "$vm"; exit 1; }
    [ $((SECONDS - t0)) -lt 300 ] || { echo "no drain in 5 min" >&2; stop_pid "$pid"; stop_pid "$vm"; exit 1; }
    sleep 0.2
  done
  ms=$(cpu_ms "$pid")
  awk -v ms="$ms" -v p="$SAMPLES" 'BEGIN { printf "%.3f\n", ms / p * 1000 }'
  stop_pid "$pid"; stop_pid "$vm"
  rm -rf "$d"
}

echo "gzip=$GZIP, $SAMPLES points, load average $(cut -d' ' -f1-3 /proc/loadavg)"
a=() b=()
for i in $(seq 1 "$ROUNDS"); do
  if [ $((i % 2)) = 1 ]; then a+=("$(run a "$A")"); b+=("$(run b "$B")")
  else b+=("$(run b "$B")"); a+=("$(run a "$A")"); fi
  echo "round $i: A ${a[-1]} ms, B ${b[-1]} ms per 1,000 points"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
echo "median: A $(median "${a[@]}") ms, B $(median "${b[@]}") ms per 1,000 points"
