#!/usr/bin/env bash
# Sink throughput benchmark: sobre-collector's InfluxDB sink against curl
# posting the same 5,000-line batches to the same server, in one run.
#
# How: a store is generated with N usage samples from K agents (Python's
# sqlite3, the collector's own schema), then the collector starts with the
# sink enabled and drains that backlog -- the replay path after an outage.
# The sink's batches are captured once (SOBRE_SINK_DUMP_DIR, a bench-only
# switch) so that curl posts exactly the same lines: one curl process,
# one connection (--next), batches in order, plain and gzip (level 1, as
# the sink sends). Servers: Debian's InfluxDB 1.x (/write) and
# VictoriaMetrics (/api/v2/write), a fresh instance per case (so that no
# case finds the series already created, or pays for compacting an
# earlier case's data), each on free loopback ports in a temp dir.
#
# Reported: points/s of each case and the sink's share of curl's rate
# (goal >= 80 %; curl gzip posts bodies compressed ahead of the clock, the
# sink compresses on the same 2 cores the server uses); the collector's
# CPU time (user+sys of the whole process, all threads) per 1,000 points
# (goal <= 2 ms): while draining, i.e. without the collector's start-up
# (the CPU spent until /health answers, once per process: broker, store,
# first detection pass), and with it; and the sink's own
# per-batch timings from its debug log: read, build, gzip per point. The
# sink's time ends at the server's answer to its last batch (its log);
# the drain is polled every 200 ms only, so that the harness does not
# take CPU from the server.
#
# Figures: BENCHMARKS.md, "InfluxDB sink" (2-core machine, other builds
# running: compare within a run).
#
# Usage: bench/sink.sh          (about 3 minutes on 2 cores, plus the build)
# Environment (defaults in brackets):
#   SAMPLES [200000]  AGENTS [20]  BATCH [5000]
#   SERVERS ["influxdb victoria"]
#   SKIP_BUILD [0]   1: use target/release/sobre-collector as it is
#   KEEP_TMP [0]     1: keep the work dir
#   OUT [target/bench-results/sink-<time>.txt]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SAMPLES=${SAMPLES:-200000}
AGENTS=${AGENTS:-20}
BATCH=${BATCH:-5000}
SERVERS=${SERVERS:-influxdb victoria}
mkdir -p "$ROOT/target/bench-results"
OUT=${OUT:-$ROOT/target/bench-results/sink-$(date +%Y%m%d-%H%M%S).txt}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/sobre-collector

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true; done
  if [ -n "${TMP:-}" ] && [ -d "$TMP" ]; then
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need() { # need COMMAND PACKAGE
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "$1" ]; then
    echo "installing $2" >&2
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$2" >/dev/null
  fi
}
need curl curl
need python3 python3
need /usr/bin/influxd influxdb
need /usr/bin/victoria-metrics victoria-metrics

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "building the release collector..." >&2
  cargo build --release -p sobre-collector >&2
fi
[ -x "$BIN" ] || { echo "$BIN is missing" >&2; exit 1; }

base=${TMPDIR:-/tmp}
[ "$(stat -f -c %T "$base")" = tmpfs ] && { base=$ROOT/target/bench-tmp; mkdir -p "$base"; }
TMP=$(mktemp -d "$base/sobre-sink-bench.XXXXXX")

# free_port, wait_http, metric, collector_config and cpu_ms (the collector's threads live
# through the run: tokio keeps idle blocking threads 10 s, so cpu_ms misses
# none of its CPU).
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
now_ms() { date +%s%3N; }

# --- servers ---------------------------------------------------------------
start_influx() { # DIR -> INFLUX_PORT
  local dir=$1 rpc; mkdir -p "$dir"
  INFLUX_PORT=$(free_port); rpc=$(free_port)
  cat >"$dir/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$rpc"
[meta]
  dir = "$dir/meta"
[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$INFLUX_PORT"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
EOF
  /usr/bin/influxd -config "$dir/influxdb.conf" >"$dir/log" 2>&1 </dev/null &
  INFLUX_PID=$!; PIDS+=("$INFLUX_PID")
  wait_http "http://127.0.0.1:$INFLUX_PORT/ping" 30
}
create_db() { curl -sf -o /dev/null -XPOST "http://127.0.0.1:$INFLUX_PORT/query" --data-urlencode "q=CREATE DATABASE $1"; }
start_vm() { # DIR -> VM_PORT VM_PID
  mkdir -p "$1"; VM_PORT=$(free_port)
  /usr/bin/victoria-metrics -storageDataPath="$1/data" -httpListenAddr="127.0.0.1:$VM_PORT" \
    -retentionPeriod=100y -loggerLevel=ERROR >"$1/log" 2>&1 </dev/null &
  VM_PID=$!; PIDS+=("$VM_PID")
  wait_http "http://127.0.0.1:$VM_PORT/health" 30
}
stop() { kill -TERM "$1" 2>/dev/null || true; for _ in $(seq 1 200); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done; kill -KILL "$1" 2>/dev/null || true; }

# --- the store -------------------------------------------------------------
echo "generating a store with $SAMPLES samples from $AGENTS agents..." >&2
mkdir -p "$TMP/seed"
collector_config "$TMP/seed" ""
"$BIN" --config "$TMP/seed/collector.toml" >"$TMP/seed/log" 2>&1 </dev/null &
pid=$!; PIDS+=("$pid")
wait_http "http://127.0.0.1:$HTTP_PORT/health" 30
stop "$pid"
python3 - "$TMP/seed/data/sobre.sqlite" "$SAMPLES" "$AGENTS" <<'EOF'
import json, random, sqlite3, sys, time
path, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(42)
db = sqlite3.connect(path)
now = int(time.time() * 1000)
per = (n + k - 1) // k
start = now - per * 10_000
with db:
    for a in range(1, k + 1):
        inv = {"hostname": f"poste-{a:03}.mairie.local", "chassis": "desktop" if a % 4 else "server",
               "group": ["mairie", "ecoles", "dsi", "social"][a % 4], "site": ["hdv", "jaures"][a % 2],
               "bios_date": "03/14/2019", "cpu_model": "Intel(R) Core(TM) i5-8500", "monitors": []}
        db.execute("INSERT INTO agents (id, agent_id, hostname, first_seen_ms, last_seen_ms, online, transport, inventory)"
                   " VALUES (?, ?, ?, ?, ?, 1, 'mqtt', ?)",
                   (a, f"bench-{a:03}", inv["hostname"], start, now, json.dumps(inv)))
    rows = []
    seq0 = now * 1000
    for i in range(n):
        a = i % k + 1
        j = i // k
        cpu = random.random() * 60
        rows.append((a, seq0 + j, start + j * 10_000, start + j * 10_000 + 40, 10_000, cpu,
                     16_000_000_000, random.randint(2, 12) * 1_000_000_000, 4_000_000_000, random.randint(0, 10**8),
                     random.randint(0, 10**7), random.randint(0, 10**7), random.randint(0, 10**6), random.randint(0, 10**6),
                     cpu / 25, cpu / 30, cpu / 35, 86_400 + j * 10, 1, random.randint(0, 600), 1,
                     0.01 * j, 3_500_000, 150 * j, 12 + cpu * 0.5, (12 + cpu * 0.5) * 10, "model"))
    db.executemany("INSERT INTO samples (agent, seq, sent_ms, received_ms, interval_ms, cpu_percent, mem_total,"
                   " mem_available, swap_total, swap_used, disk_read, disk_written, net_rx, net_tx, load1, load5,"
                   " load15, uptime_s, user_sessions, input_idle_s, user_active, agent_cpu_s, agent_rss, agent_sent,"
                   " power_w, energy_j, power_source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
EOF

# Runs the collector with the sink on a copy of the store until the
# backlog is drained. Sets SINK_SECONDS (spawn to the last batch's answer,
# from the collector's own debug log: no polling granularity), SINK_CPU_MS
# (the whole process), SINK_START_CPU_MS (its CPU until /health answers),
# SINK_POINTS and SINK_SPLIT (read / build / gzip microseconds per point,
# summed from the sink's per-batch debug events).
run_sink() { # NAME SINK_TOML [DUMP_DIR]
  local dir=$TMP/$1 t0 written c1 ch
  mkdir -p "$dir"; cp -r "$TMP/seed/data" "$dir/data"; rm -f "$dir/data/sink.cursor"
  collector_config "$dir" "$2"
  t0=$(date +%s.%N)
  SOBRE_LOG=info,sobre_collector::sink=debug SOBRE_SINK_DUMP_DIR=${3:-} \
    "$BIN" --config "$dir/collector.toml" >"$dir/log" 2>&1 </dev/null &
  local pid=$!; PIDS+=("$pid")
  wait_http "http://127.0.0.1:$HTTP_PORT/health" 30
  ch=$(cpu_ms "$pid")
  # Polled slowly: the harness must not take the CPU the server needs.
  while :; do
    written=$(metric "$HTTP_PORT" sobre_sink_points_written_total)
    if [ "$written" -ge "$SAMPLES" ] && [ "$(metric "$HTTP_PORT" sobre_sink_backlog_rows)" = 0 ]; then break; fi
    kill -0 "$pid" 2>/dev/null || { echo "collector died: $(tail -5 "$dir/log")" >&2; exit 1; }
    [ "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print (b - a < 600) }')" = 1 ] || { echo "sink did not drain in 10 min" >&2; exit 1; }
    sleep 0.2
  done
  c1=$(cpu_ms "$pid")
  SINK_POINTS=$written
  SINK_CPU_MS=$c1
  SINK_START_CPU_MS=$ch
  read -r SINK_SECONDS SINK_SPLIT < <(python3 - "$dir/log" "$t0" <<'PY'
import re, sys, datetime
log, t0 = sys.argv[1], float(sys.argv[2])
ansi = re.compile(r"\x1b\[[0-9;]*m")
last = None; n = r = b = e = 0
for line in open(log, errors="replace"):
    line = ansi.sub("", line)
    if "sink batch delivered" in line:
        last = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
    elif "sink batch prepared" in line:
        kv = dict(re.findall(r"(\w+)=(\d+)", line))
        n += int(kv["points"]); r += int(kv["read_us"]); b += int(kv["build_us"]); e += int(kv["encode_us"])
n = max(n, 1)
print(f"{last - t0:.3f}", f"{r / n:.2f}/{b / n:.2f}/{e / n:.2f}")
PY
)
  local dropped retried
  dropped=$(metric "$HTTP_PORT" sobre_sink_points_dropped_total)
  retried=$(metric "$HTTP_PORT" sobre_sink_points_retried_total)
  [ "$dropped" = 0 ] || echo "warning: $1: $dropped points dropped" >&2
  [ "$retried" = 0 ] || echo "note: $1: $retried points retried" >&2
  stop "$pid"
}

# Posts every dumped batch in order over one connection. Sets CURL_SECONDS.
run_curl() { # URL DIR_OF_FILES [gzip]
  local args=() f first=1 t0 t1
  for f in "$2"/*; do
    [ $first = 1 ] || args+=(--next)
    first=0
    args+=(-sS -o /dev/null -f -H "Content-Type: text/plain; charset=utf-8")
    [ "${3:-}" = gzip ] && args+=(-H "Content-Encoding: gzip")
    args+=(--data-binary "@$f" "$1")
  done
  t0=$(now_ms); curl "${args[@]}"; t1=$(now_ms)
  CURL_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1000 }')
}

rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }

# --- capture the sink's batches once ---------------------------------------
echo "capturing the sink's batches..." >&2
start_influx "$TMP/influx-capture"
create_db capture
mkdir -p "$TMP/batches"
run_sink capture "[sink]
enabled = true
api = \"v1\"
url = \"http://127.0.0.1:$INFLUX_PORT\"
db = \"capture\"
batch_max = $BATCH" "$TMP/batches"
stop "$INFLUX_PID"
mkdir -p "$TMP/batches-gz"
for f in "$TMP/batches"/*; do gzip -1 -c "$f" >"$TMP/batches-gz/$(basename "$f").gz"; done
LINES=$(cat "$TMP/batches"/* | wc -l)
NBATCH=$(ls "$TMP/batches" | wc -l)
BYTES=$(cat "$TMP/batches"/* | wc -c)
GZBYTES=$(cat "$TMP/batches-gz"/* | wc -c)
[ "$LINES" = "$SAMPLES" ] || echo "warning: captured $LINES lines for $SAMPLES samples" >&2

report=$TMP/report.txt
{
  echo "sobre sink benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "machine: $(nproc) cores, $(uname -r); $(/usr/bin/influxd version 2>/dev/null | head -1); VictoriaMetrics $(/usr/bin/victoria-metrics -version 2>&1 | head -1)"
  echo "workload: $SAMPLES usage points ($AGENTS agents), $NBATCH batches of up to $BATCH lines, $((BYTES / LINES)) B/line, $BYTES B plain, $GZBYTES B gzip -1"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine skews every figure)"
  printf "%-10s %-22s %10s %12s\n" server case seconds points/s
} >"$report"

for server in $SERVERS; do
  case $server in
    influxdb)
      # A fresh server per case, as for VictoriaMetrics: no case pays for
      # the compactions of the data an earlier case wrote.
      start_influx "$TMP/influx-curl-plain"; create_db b
      run_curl "http://127.0.0.1:$INFLUX_PORT/write?db=b&precision=ms" "$TMP/batches"
      plain=$CURL_SECONDS; stop "$INFLUX_PID"
      start_influx "$TMP/influx-curl-gzip"; create_db b
      run_curl "http://127.0.0.1:$INFLUX_PORT/write?db=b&precision=ms" "$TMP/batches-gz" gzip
      gz=$CURL_SECONDS; stop "$INFLUX_PID"
      start_influx "$TMP/influx-sink-plain"; create_db b
      run_sink sink-influx-plain "[sink]
enabled = true
api = \"v1\"
url = \"http://127.0.0.1:$INFLUX_PORT\"
db = \"b\"
gzip = false
batch_max = $BATCH"
      plain_sink=("$SINK_SECONDS" "$SINK_CPU_MS" "$SINK_POINTS" "$SINK_START_CPU_MS" "$SINK_SPLIT")
      stop "$INFLUX_PID"
      start_influx "$TMP/influx-sink"; create_db b
      run_sink sink-influx "[sink]
enabled = true
api = \"v1\"
url = \"http://127.0.0.1:$INFLUX_PORT\"
db = \"b\"
batch_max = $BATCH"
      stop "$INFLUX_PID"
      ;;
    victoria)
      start_vm "$TMP/vm-plain"
      run_curl "http://127.0.0.1:$VM_PORT/api/v2/write?bucket=b&precision=ms" "$TMP/batches"
      plain=$CURL_SECONDS; stop "$VM_PID"
      start_vm "$TMP/vm-gzip"
      run_curl "http://127.0.0.1:$VM_PORT/api/v2/write?bucket=b&precision=ms" "$TMP/batches-gz" gzip
      gz=$CURL_SECONDS; stop "$VM_PID"
      start_vm "$TMP/vm-sink-plain"
      run_sink sink-vm-plain "[sink]
enabled = true
api = \"v2\"
url = \"http://127.0.0.1:$VM_PORT\"
bucket = \"b\"
gzip = false
batch_max = $BATCH"
      plain_sink=("$SINK_SECONDS" "$SINK_CPU_MS" "$SINK_POINTS" "$SINK_START_CPU_MS" "$SINK_SPLIT")
      stop "$VM_PID"
      start_vm "$TMP/vm-sink"
      run_sink sink-vm "[sink]
enabled = true
api = \"v2\"
url = \"http://127.0.0.1:$VM_PORT\"
bucket = \"b\"
batch_max = $BATCH"
      stop "$VM_PID"
      ;;
    *) echo "unknown server $server" >&2; exit 1 ;;
  esac
  gzrate=$(rate "$LINES" "$gz")
  plainrate=$(rate "$LINES" "$plain")
  sinkrate=$(rate "$SAMPLES" "$SINK_SECONDS")
  psinkrate=$(rate "$SAMPLES" "${plain_sink[0]}")
  pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", 100 * a / b }'; }
  perk() { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.2f", c * 1000 / n }'; }
  drain() { awk -v c="$1" -v s="$2" -v n="$3" 'BEGIN { printf "%.2f", (c - s) * 1000 / n }'; }
  {
    printf "%-10s %-22s %10s %12s\n" "$server" "curl, plain" "$plain" "$plainrate"
    printf "%-10s %-22s %10s %12s\n" "$server" "curl, gzip -1" "$gz" "$gzrate"
    printf "%-10s %-22s %10s %12s %9s%% of curl plain; CPU per 1,000 points %s ms draining, %s ms with start-up (%s ms); read/build/gzip %s us per point\n" "$server" "sobre sink, plain" \
      "${plain_sink[0]}" "$psinkrate" "$(pct "$psinkrate" "$plainrate")" "$(drain "${plain_sink[1]}" "${plain_sink[3]}" "${plain_sink[2]}")" "$(perk "${plain_sink[1]}" "${plain_sink[2]}")" "${plain_sink[3]}" "${plain_sink[4]}"
    printf "%-10s %-22s %10s %12s %9s%% of curl gzip; CPU per 1,000 points %s ms draining, %s ms with start-up (%s ms); read/build/gzip %s us per point\n" "$server" "sobre sink, gzip" \
      "$SINK_SECONDS" "$sinkrate" "$(pct "$sinkrate" "$gzrate")" "$(drain "$SINK_CPU_MS" "$SINK_START_CPU_MS" "$SINK_POINTS")" "$(perk "$SINK_CPU_MS" "$SINK_POINTS")" "$SINK_START_CPU_MS" "$SINK_SPLIT"
  } >>"$report"
done
echo "sink seconds: from the collector's spawn to the server's answer to its last batch (its debug log); CPU: of the whole process while it drains (all threads; its start-up, the CPU until /health answers, taken off), and with start-up; read/build/gzip: the sink's own per-batch timings (wall clock on the blocking pool)." >>"$report"
cat "$report"
cp "$report" "$OUT"
echo "report: $OUT" >&2
