#!/usr/bin/env bash
# Store benchmark (issue #9; BENCHMARKS.md "Store: SQLite and PostgreSQL"):
# what one envelope costs a collector on its embedded SQLite and on
# PostgreSQL, and what two collectors sharing one PostgreSQL take together
# against one. In one run, on free loopback ports in a temp dir on a real
# disk, each case a fresh store:
#   sqlite   one collector, SQLite (the default), N agents over gRPC
#   pg       one collector, PostgreSQL (Debian's, started here), N agents
#   pg_two   two collectors on that one PostgreSQL, N/2 agents each (as an
#            HTTP/2 load balancer would spread gRPC streams)
# gRPC keeps the broker out of the figures. For each case: envelopes
# acked/s (after commit), p50/p99 latency, and per stored envelope the CPU
# (collector; PostgreSQL's server processes apart) and the bytes written to
# disk (/proc/PID/io write_bytes of the collector and, on PostgreSQL, of
# every server process: WAL, data files, checkpoints).
#
# Usage: bench/store.sh   (about 2 minutes)
# Environment: AGENTS [100] WINDOW [16] DURATION [20] WARMUP [3]
#   CASES ["sqlite pg pg_two"] SKIP_BUILD [0] KEEP_TMP [0]
#   OUT [target/bench-results/store-<time>.txt]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

AGENTS=${AGENTS:-100}
WINDOW=${WINDOW:-16}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
CASES=${CASES:-sqlite pg pg_two}
mkdir -p "$ROOT/target/bench-results"
OUT=${OUT:-$ROOT/target/bench-results/store-$(date +%Y%m%d-%H%M%S).txt}

need_pkg curl curl
need_pkg python3 python3
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$PG_BIN" ]; then
  need_pkg /usr/lib/postgresql postgresql
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
release_bins sobre-collector sobre-loadgen
bench_init
chmod 755 "$BENCH_TMP"
RESULTS=$BENCH_TMP/results.jsonl
: >"$RESULTS"
echo "code: $(code_state)" >&2
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# PostgreSQL refuses to run as root: as root, its files and processes
# belong to the `postgres` user Debian's package creates.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# start_postgres DIR PORT -> sets PG_PID (the postmaster), PG_URL
start_postgres() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U sobre --no-sync >"$dir/initdb.log" 2>&1
  as_pg "$PG_BIN/postgres" -D "$dir/data" -p "$port" -k "$dir" -c listen_addresses=127.0.0.1 \
    >"$dir/postgres.log" 2>&1 </dev/null &
  track $!
  wait_port "$port" 30
  PG_PID=$(head -1 "$dir/data/postmaster.pid")
  track "$PG_PID"
  "$PG_BIN/psql" -q -h 127.0.0.1 -p "$port" -U sobre -d postgres -c "CREATE DATABASE sobre" >/dev/null
  PG_URL="postgres://sobre@127.0.0.1:$port/sobre"
}

# Sum of a counter over the postmaster and its children (backends, WAL
# writer, checkpointer...): pg_sum PID cpu|write
pg_sum() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    if [ "$2" = cpu ]; then total=$((total + $(cpu_ticks "$p"))); else total=$((total + $(io_field "$p" write_bytes))); fi
  done
  echo "$total"
}

# start_collector DIR STORE_TOML -> sets C_PID C_HTTP C_GRPC
start_collector() {
  local dir=$1 store_toml=$2
  mkdir -p "$dir"
  # Per-agent limits (200/s) would cap 100 closed-loop agents at 20,000/s:
  # this measures the store, not the limits.
  collector_config "$dir" "[store]
$store_toml
[cluster]
node = \"$(basename "$dir")\"
[limits]
max_envelopes_per_s = 1000000.0
burst = 1000000.0"
  C_HTTP=$HTTP_PORT C_GRPC=$GRPC_PORT
  SOBRE_LOG=${SOBRE_LOG:-info,rumqttd=warn,rumqttd::server::broker=off} \
    "$BIN/sobre-collector" --config "$dir/collector.toml" >"$dir/collector.log" 2>&1 </dev/null &
  C_PID=$!
  track "$C_PID"
  wait_http "http://127.0.0.1:$C_HTTP/health" 60
}

# run_case NAME STORE(sqlite|pg) COLLECTORS
run_case() {
  local name=$1 store=$2 n=$3 dir=$BENCH_TMP/$1
  mkdir -p "$dir"
  echo "== $name: $n collector(s) on $store, $AGENTS agents over gRPC, window $WINDOW, ${DURATION}s" >&2
  local store_toml="" pg_pid=""
  if [ "$store" = pg ]; then
    start_postgres "$dir/pg" "$(free_port)"
    pg_pid=$PG_PID
    store_toml="postgres_url = \"$PG_URL\""
  fi
  local pids=() https=() grpcs=() i
  for i in $(seq 1 "$n"); do
    start_collector "$dir/c$i" "$store_toml"
    pids+=("$C_PID"); https+=("$C_HTTP"); grpcs+=("$C_GRPC")
  done
  local c0=0 w0=0 s0=0 p0=0 pw0=0 t0
  for i in "${!pids[@]}"; do
    c0=$((c0 + $(cpu_ticks "${pids[$i]}")))
    w0=$((w0 + $(io_field "${pids[$i]}" write_bytes)))
    s0=$((s0 + $(metric "${https[$i]}" sobre_envelopes_stored_total | cut -d. -f1)))
  done
  if [ -n "$pg_pid" ]; then p0=$(pg_sum "$pg_pid" cpu); pw0=$(pg_sum "$pg_pid" write); fi
  t0=$(date +%s.%N)
  local per=$((AGENTS / n)) lg=()
  for i in "${!pids[@]}"; do
    "$BIN/sobre-loadgen" grpc --grpc "http://127.0.0.1:${grpcs[$i]}" --agents "$per" --window "$WINDOW" \
      --duration "$DURATION" --warmup "$WARMUP" --id-prefix "lg-$name-$i" \
      >"$dir/loadgen$i.json" 2>"$dir/loadgen$i.log" &
    lg+=($!)
  done
  for p in "${lg[@]}"; do wait "$p" || { echo "loadgen failed:" >&2; tail "$dir"/loadgen*.log >&2; exit 1; }; done
  cut -d' ' -f1-3 /proc/loadavg >"$dir/load.txt"
  local c1=0 w1=0 s1=0 p1=0 pw1=0 t1
  t1=$(date +%s.%N)
  for i in "${!pids[@]}"; do
    c1=$((c1 + $(cpu_ticks "${pids[$i]}")))
    w1=$((w1 + $(io_field "${pids[$i]}" write_bytes)))
    s1=$((s1 + $(metric "${https[$i]}" sobre_envelopes_stored_total | cut -d. -f1)))
  done
  if [ -n "$pg_pid" ]; then p1=$(pg_sum "$pg_pid" cpu); pw1=$(pg_sum "$pg_pid" write); fi
  # What a stored sample takes on disk, indexes included: the samples
  # table's size over its rows (SQLite: the whole file, WAL checkpointed).
  local size_per_row
  if [ -n "$pg_pid" ]; then
    size_per_row=$("$PG_BIN/psql" -qtA "$PG_URL" \
      -c "SELECT pg_total_relation_size('samples') / greatest(count(*), 1) FROM samples")
  fi
  for p in "${pids[@]}"; do stop_pid "$p"; done
  if [ -z "$pg_pid" ]; then
    size_per_row=$(python3 -c "import sqlite3,os,sys; d=sys.argv[1]; c=sqlite3.connect(d); n=c.execute('select count(*) from samples').fetchone()[0]; c.execute('pragma wal_checkpoint(truncate)'); print(os.path.getsize(d)//max(n,1))" "$dir/c1/data/sobre.sqlite")
  fi
  [ -n "$pg_pid" ] && stop_pid "$pg_pid" 30
  python3 - "$dir" "$name" "$store" "$n" "$c0" "$c1" "$w0" "$w1" "$s0" "$s1" "$p0" "$p1" "$pw0" "$pw1" "$t0" "$t1" "${size_per_row:-0}" >>"$RESULTS" <<'EOF'
import json, sys, glob
d, name, store, n, c0, c1, w0, w1, s0, s1, p0, p1, pw0, pw1, t0, t1, size = sys.argv[1:]
lgs = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/loadgen*.json"))]
stored = int(s1) - int(s0)
wall = float(t1) - float(t0)
per = lambda x: x / stored if stored else None
print(json.dumps(dict(
    case=name, store=store, collectors=int(n),
    rate=sum(l["rate_per_s"] for l in lgs),
    p50=max(l["p50_ms"] for l in lgs), p99=max(l["p99_ms"] for l in lgs),
    stored=stored, wall=wall,
    collector_cpu_ms=per((int(c1) - int(c0)) * 10.0),
    pg_cpu_ms=per((int(p1) - int(p0)) * 10.0),
    collector_bytes=per(int(w1) - int(w0)),
    pg_bytes=per(int(pw1) - int(pw0)),
    stored_bytes_per_sample=int(size or 0),
    load=open(f"{d}/load.txt").read().strip())))
EOF
}

for c in $CASES; do
  case $c in
    sqlite) run_case sqlite sqlite 1 ;;
    pg) run_case pg pg 1 ;;
    pg_two) run_case pg_two pg 2 ;;
    *) echo "unknown case $c" >&2; exit 2 ;;
  esac
done

{
  echo "code: $(code_state); $(nproc) CPUs; $(date -Is)"
  echo "AGENTS=$AGENTS WINDOW=$WINDOW DURATION=$DURATION over gRPC"
  python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
f = lambda v, fmt: "-" if v is None else fmt.format(v)
hdr = ("case", "collectors", "acked/s", "p50 ms", "p99 ms", "collector CPU/env",
       "PostgreSQL CPU/env", "collector disk B/env", "PostgreSQL disk B/env",
       "B on disk per sample", "load after")
print("| " + " | ".join(hdr) + " |")
print("|" + "|".join("---" for _ in hdr) + "|")
for r in rows:
    print("| " + " | ".join([r["case"], str(r["collectors"]), f(r["rate"], "{:,.0f}"),
        f(r["p50"], "{:.1f}"), f(r["p99"], "{:.1f}"),
        f(r["collector_cpu_ms"] and r["collector_cpu_ms"] * 1000, "{:.0f} µs"),
        f(r["pg_cpu_ms"] and r["pg_cpu_ms"] * 1000 if r["store"] == "pg" else None, "{:.0f} µs"),
        f(r["collector_bytes"], "{:.0f}"),
        f(r["pg_bytes"] if r["store"] == "pg" else None, "{:.0f}"),
        f(r["stored_bytes_per_sample"], "{:.0f}"), r["load"]]) + " |")
by = {r["case"]: r for r in rows}
if "pg" in by and "pg_two" in by:
    print(f"\ntwo collectors / one on PostgreSQL: {by['pg_two']['rate'] / by['pg']['rate']:.2f}x envelopes/s")
if "pg" in by and "sqlite" in by:
    a, b = by["pg"], by["sqlite"]
    print(f"PostgreSQL / SQLite: {a['rate'] / b['rate']:.2f}x envelopes/s; CPU per envelope (collector + server) "
          f"{(a['collector_cpu_ms'] + (a['pg_cpu_ms'] or 0)) / b['collector_cpu_ms']:.2f}x")
EOF
} | tee "$OUT"
