#!/usr/bin/env bash
# Ingest benchmark of sobre-collector (BENCHMARKS.md explains the figures).
#
# In one run, on free loopback ports in a temp dir on a real disk:
#   1. reference  Mosquitto alone: N publishers -> 1 subscriber, QoS 1, 200 B
#   2. embedded   collector with its embedded broker, N agents over MQTT
#   3. external   collector behind Mosquitto, N agents over MQTT
#   4. grpc       collector, N agents over gRPC streams
#   5. overload   far more offered load than capacity, over MQTT (embedded):
#                 the collector's memory must stay bounded
#   embedded_base  as 2, with the collector in BASE_BIN (another build,
#                 e.g. before a change): the report gives embedded / embedded_base
#                 side by side (run both in one CASES; skipped without BASE_BIN)
#   idle, idle_base  IDLE_AGENTS agents over MQTT (embedded), one envelope
#                 every 10 s each, as a real fleet: memory per connection
#                 (not in the default CASES; idle_base needs BASE_BIN)
# and two diagnostic runs that explain the MQTT figures (not goals):
#   external_nodelay  as 3, Mosquitto with set_tcp_nodelay true
#   embedded_nodelay  as 2, the same binary with bench/nodelay_preload.c
#                     preloaded (TCP_NODELAY on the broker's and client's
#                     sockets); skipped without a C compiler
# Each collector run also reports its peak RSS (VmHWM), its CPU, and the
# bytes it wrote to disk (/proc/PID/io write_bytes) per stored envelope.
#
# The load comes from tests/src/bin/sobre-loadgen.rs (closed loop: at most
# WINDOW unacked envelopes per agent; see `sobre-loadgen --help`).
#
# Usage: bench/ingest.sh            (about 5 minutes on 2 cores)
# Environment (defaults in brackets):
#   AGENTS [200] WINDOW [16] DURATION [20] WARMUP [3]   the four main runs
#   OVERLOAD_AGENTS [1000] OVERLOAD_WINDOW [64] OVERLOAD_DURATION [20]
#   OVERLOAD_MODE [mqtt] (or grpc)  OVERLOAD_BROKER [embedded] (or external)
#   IDLE_AGENTS [2000]
#   SKIP_BUILD [0]   1: use the release binaries already in target/release
#   BASE_BIN         a folder holding another sobre-collector, for embedded_base
#   CASES ["reference embedded_base embedded external grpc overload external_nodelay embedded_nodelay"]
#   KEEP_TMP [0]     1: keep the work dir (stores, logs)
#   MOSQ_EXTRA_CONF  extra mosquitto.conf lines (e.g. "max_inflight_messages 100")
#   COLLECTOR_EXTRA_TOML  extra sections for the collector's config, e.g.
#                    $'[store]\nqueue = 256\nbatch_max = 256'
#   OUT [target/bench-results/ingest-<time>.txt]   copy of the report
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

AGENTS=${AGENTS:-200}
WINDOW=${WINDOW:-16}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
OVERLOAD_AGENTS=${OVERLOAD_AGENTS:-1000}
OVERLOAD_WINDOW=${OVERLOAD_WINDOW:-64}
OVERLOAD_DURATION=${OVERLOAD_DURATION:-20}
OVERLOAD_MODE=${OVERLOAD_MODE:-mqtt}
OVERLOAD_BROKER=${OVERLOAD_BROKER:-embedded}
IDLE_AGENTS=${IDLE_AGENTS:-2000}
# More sobre-loadgen arguments for the next collector_case (idle cases).
LOADGEN_EXTRA=()
CASES=${CASES:-reference embedded_base embedded external grpc overload external_nodelay embedded_nodelay}
mkdir -p "$ROOT/target/bench-results"
OUT=${OUT:-$ROOT/target/bench-results/ingest-$(date +%Y%m%d-%H%M%S).txt}

need_pkg /usr/sbin/mosquitto mosquitto
need_pkg curl curl
need_pkg python3 python3

release_bins sobre-collector sobre-loadgen

bench_init
CODE_STATE=$(code_state)
echo "code: $CODE_STATE" >&2
RESULTS=$BENCH_TMP/results.jsonl
: >"$RESULTS"
LOAD_SAMPLES=$BENCH_TMP/loadavg.txt
echo "machine: $(nproc) CPUs, $(free -m | awk '/^Mem:/ {print $2 " MB RAM, " $7 " MB available"}'); $(uname -sr)" >&2
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# Samples VmRSS of PID every second into FILE until PID exits.
rss_sampler() {
  local pid=$1 file=$2
  while kill -0 "$pid" 2>/dev/null; do
    echo "$(date +%s) $(status_kb "$pid" VmRSS)" >>"$file"
    sleep 1
  done
}

# run_loadgen CASE_DIR ARGS... : runs the loadgen, leaves its JSON in
# CASE_DIR/loadgen.json and its CPU seconds in CASE_DIR/loadgen.cpu.
run_loadgen() {
  local dir=$1
  shift
  local TIMEFORMAT='%R %U %S'
  { time "$BIN/sobre-loadgen" "$@" >"$dir/loadgen.json" 2>"$dir/loadgen.log"; } 2>"$dir/loadgen.cpu"
  cut -d' ' -f1-3 /proc/loadavg >>"$LOAD_SAMPLES"
  if ! [ -s "$dir/loadgen.json" ]; then
    echo "loadgen produced no result; its log:" >&2
    tail -20 "$dir/loadgen.log" >&2
    return 1
  fi
}

reference_case() {
  local dir=$BENCH_TMP/reference port
  port=$(free_port)
  echo "== reference: Mosquitto alone, $AGENTS publishers -> 1 subscriber, window $WINDOW" >&2
  start_mosquitto "$dir" "$port"
  local t0 c0
  t0=$(date +%s.%N)
  c0=$(cpu_ticks "$MOSQ_PID")
  run_loadgen "$dir" reference --broker "127.0.0.1:$port" --agents "$AGENTS" --window "$WINDOW" \
    --duration "$DURATION" --warmup "$WARMUP" --payload-bytes 200
  local c1 t1
  c1=$(cpu_ticks "$MOSQ_PID")
  t1=$(date +%s.%N)
  local hwm
  hwm=$(status_kb "$MOSQ_PID" VmHWM)
  stop_pid "$MOSQ_PID"
  python3 - "$dir" "$hwm" "$c0" "$c1" "$t0" "$t1" >>"$RESULTS" <<'EOF'
import json, sys
d, hwm, c0, c1, t0, t1 = sys.argv[1:]
r = json.load(open(f"{d}/loadgen.json"))
wall, u, s = open(f"{d}/loadgen.cpu").read().split()
r.update(case="reference", server="mosquitto", server_hwm_kb=int(hwm),
         server_cpu_pct=(int(c1) - int(c0)) / 100 / (float(t1) - float(t0)) * 100,
         loadgen_cpu_pct=(float(u) + float(s)) / float(wall) * 100)
print(json.dumps(r))
EOF
}

# collector_case NAME MODE(mqtt|grpc) BROKER(embedded|external) AGENTS WINDOW DURATION [PRELOAD]
collector_case() {
  local name=$1 mode=$2 broker=$3 agents=$4 window=$5 duration=$6 preload=${7:-}
  local dir=$BENCH_TMP/$name http grpc mqtt mqtt_toml
  mkdir -p "$dir"
  http=$(free_port)
  grpc=$(free_port)
  mqtt=$(free_port)
  echo "== $name: collector ($broker broker) over $mode, $agents agents, window $window, ${duration}s" >&2
  if [ "$broker" = external ]; then
    start_mosquitto "$dir/mosquitto" "$mqtt"
    mqtt_toml="embedded = false
broker = \"mqtt://127.0.0.1:$mqtt\""
  else
    mqtt_toml="embedded = true
listen = \"127.0.0.1:$mqtt\""
  fi
  cat >"$dir/collector.toml" <<EOF
data_dir = "$dir/data"
[http]
listen = "127.0.0.1:$http"
[mqtt]
$mqtt_toml
[grpc]
listen = "127.0.0.1:$grpc"
# The load generator's simulated agents do not enrol (SECURITY.md).
[security]
require_enrolment = false
${COLLECTOR_EXTRA_TOML:-}
EOF
  SOBRE_LOG=${SOBRE_LOG:-info,rumqttd=warn,rumqttd::server::broker=off,rumqttc=warn} LD_PRELOAD=$preload \
    "${COLLECTOR_BIN:-$BIN/sobre-collector}" --config "$dir/collector.toml" >"$dir/collector.log" 2>&1 </dev/null &
  local pid=$!
  track "$pid"
  wait_http "http://127.0.0.1:$http/health" 30
  rss_sampler "$pid" "$dir/rss.txt" &
  track $!
  local w0 c0 t0 s0
  w0=$(io_field "$pid" write_bytes)
  c0=$(cpu_ticks "$pid")
  s0=$(metric "$http" sobre_envelopes_stored_total)
  t0=$(date +%s.%N)
  local target
  if [ "$mode" = grpc ]; then target=(--grpc "http://127.0.0.1:$grpc"); else target=(--broker "127.0.0.1:$mqtt"); fi
  local ok=1
  run_loadgen "$dir" "$mode" "${target[@]}" --agents "$agents" --window "$window" \
    --duration "$duration" --warmup "$WARMUP" --id-prefix "lg-$name" "${LOADGEN_EXTRA[@]}" || ok=0
  # Let the last batch commit before reading the counters.
  sleep 1
  local w1 c1 t1 s1 hwm rss_end
  t1=$(date +%s.%N)
  c1=$(cpu_ticks "$pid")
  w1=$(io_field "$pid" write_bytes)
  s1=$(metric "$http" sobre_envelopes_stored_total)
  hwm=$(status_kb "$pid" VmHWM)
  rss_end=$(status_kb "$pid" VmRSS)
  curl -sf "http://127.0.0.1:$http/metrics" >"$dir/metrics.txt" || true
  local cancelled
  cancelled=$(io_field "$pid" cancelled_write_bytes)
  local db_bytes
  db_bytes=$(du -sb "$dir/data" | cut -f1)
  local mosq_hwm=0
  [ "$broker" = external ] && mosq_hwm=$(status_kb "$MOSQ_PID" VmHWM)
  stop_pid "$pid"
  [ "$broker" = external ] && stop_pid "$MOSQ_PID"
  # Warnings and errors of the collector, for the report.
  # (timestamps and numbers blanked so that repeats count as one line)
  grep -E ' (WARN|ERROR) ' "$dir/collector.log" | sed -E 's/^[^ ]+ +//; s/[0-9]+/N/g' |
    sort | uniq -c | sort -rn | head -6 >"$dir/log-issues.txt" || true
  if [ -s "$dir/log-issues.txt" ]; then
    echo "   collector log warnings/errors ($name):" >&2
    cat "$dir/log-issues.txt" >&2
  fi
  if [ "$ok" = 0 ]; then
    echo "   $name: no result (see above)" >&2
    return 0
  fi
  python3 - "$dir" "$name" "$broker" "$hwm" "$rss_end" "$w0" "$w1" "$s0" "$s1" "$c0" "$c1" "$t0" "$t1" "$cancelled" "$db_bytes" "$mosq_hwm" >>"$RESULTS" <<'EOF'
import json, sys
(d, name, broker, hwm, rss_end, w0, w1, s0, s1, c0, c1, t0, t1, cancelled, db, mosq_hwm) = sys.argv[1:]
r = json.load(open(f"{d}/loadgen.json"))
wall, u, s = open(f"{d}/loadgen.cpu").read().split()
m = {}
for line in open(f"{d}/metrics.txt"):
    if line and not line.startswith("#"):
        k, _, v = line.rpartition(" ")
        m[k] = float(v)
rss = [int(l.split()[1]) for l in open(f"{d}/rss.txt") if len(l.split()) == 2]
stored = int(s1) - int(s0)
written = int(w1) - int(w0)
r.update(case=name, server="collector", broker=broker,
         server_hwm_kb=int(hwm), server_rss_end_kb=int(rss_end),
         server_rss_samples_kb=rss,
         server_cpu_pct=(int(c1) - int(c0)) / 100 / (float(t1) - float(t0)) * 100,
         loadgen_cpu_pct=(float(u) + float(s)) / float(wall) * 100,
         stored=stored, write_bytes=written, cancelled_write_bytes=int(cancelled),
         bytes_per_envelope=written / stored if stored else None,
         db_bytes=int(db), mosquitto_hwm_kb=int(mosq_hwm),
         acks_sent=m.get("sobre_acks_sent_total", 0), acks_dropped=m.get("sobre_acks_dropped_total", 0),
         duplicates=m.get("sobre_envelopes_duplicate_total", 0),
         commits=m.get("sobre_store_commits_total", 0),
         commit_errors=m.get("sobre_store_commit_errors_total", 0),
         rejected=sum(v for k, v in m.items() if k.startswith("sobre_envelopes_rejected_total")),
         log_issues=open(f"{d}/log-issues.txt").read())
print(json.dumps(r))
EOF
}

for c in $CASES; do
  case $c in
    reference) reference_case ;;
    embedded) collector_case embedded mqtt embedded "$AGENTS" "$WINDOW" "$DURATION" ;;
    embedded_base)
      if [ -x "${BASE_BIN:-}/sobre-collector" ]; then
        COLLECTOR_BIN=$BASE_BIN/sobre-collector collector_case embedded_base mqtt embedded "$AGENTS" "$WINDOW" "$DURATION"
      else
        echo "== embedded_base: skipped (set BASE_BIN to a folder holding another sobre-collector)" >&2
      fi ;;
    external) collector_case external mqtt external "$AGENTS" "$WINDOW" "$DURATION" ;;
    idle | idle_base)
      if [ "$c" = idle_base ] && ! [ -x "${BASE_BIN:-}/sobre-collector" ]; then
        echo "== idle_base: skipped (set BASE_BIN)" >&2
        continue
      fi
      LOADGEN_EXTRA=(--interval-ms 10000 --connect-timeout 60)
      if [ "$c" = idle_base ]; then
        COLLECTOR_BIN=$BASE_BIN/sobre-collector collector_case idle_base mqtt embedded "$IDLE_AGENTS" 1 "$DURATION"
      else
        collector_case idle mqtt embedded "$IDLE_AGENTS" 1 "$DURATION"
      fi
      LOADGEN_EXTRA=() ;;
    grpc) collector_case grpc grpc embedded "$AGENTS" "$WINDOW" "$DURATION" ;;
    overload) collector_case overload "$OVERLOAD_MODE" "$OVERLOAD_BROKER" "$OVERLOAD_AGENTS" "$OVERLOAD_WINDOW" "$OVERLOAD_DURATION" ;;
    external_nodelay)
      MOSQ_EXTRA_CONF="${MOSQ_EXTRA_CONF:-}
set_tcp_nodelay true" collector_case external_nodelay mqtt external "$AGENTS" "$WINDOW" "$DURATION" ;;
    embedded_nodelay)
      if command -v cc >/dev/null 2>&1 &&
        cc -shared -fPIC -O2 -o "$BENCH_TMP/nodelay.so" "$ROOT/bench/nodelay_preload.c" -ldl; then
        collector_case embedded_nodelay mqtt embedded "$AGENTS" "$WINDOW" "$DURATION" "$BENCH_TMP/nodelay.so"
      else
        echo "== embedded_nodelay: skipped (no C compiler)" >&2
      fi ;;
    *) echo "unknown case $c" >&2; exit 2 ;;
  esac
done

{
echo "code: $CODE_STATE"
echo "machine: $(nproc) CPUs, $(free -m | awk '/^Mem:/ {print $2 " MB RAM"}'), $(uname -sr); date: $(date -Is)"
echo "parameters: AGENTS=$AGENTS WINDOW=$WINDOW DURATION=$DURATION WARMUP=$WARMUP OVERLOAD=${OVERLOAD_AGENTS}x$OVERLOAD_WINDOW/${OVERLOAD_DURATION}s over $OVERLOAD_MODE ($OVERLOAD_BROKER broker)"
python3 - "$RESULTS" "$LOAD_SAMPLES" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
loads = [l.strip() for l in open(sys.argv[2])]
by = {r["case"]: r for r in rows}
ref = by.get("reference", {}).get("rate_per_s")
def f(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)
def ratio(r):
    if r["case"] == "reference" or not ref:
        return "-"
    return f"{100 * r['rate_per_s'] / ref:.0f} %"
print("\nsobre ingest benchmark (closed loop; rate = envelopes acked after commit per second;")
print("reference = messages/s Mosquitto delivers to one subscriber)\n")
hdr = ("case", "agents x win", "acked/s", "vs ref", "p50 ms", "p99 ms", "max ms",
       "peak RSS", "server CPU", "disk B/env", "loadgen CPU")
print("| " + " | ".join(hdr) + " |")
print("|" + "|".join("---" for _ in hdr) + "|")
for r in rows:
    print("| " + " | ".join([
        r["case"], f"{r['agents']} x {r['window']}", f(r["rate_per_s"]), ratio(r),
        f(r["p50_ms"], "{:.1f}"), f(r["p99_ms"], "{:.1f}"), f(r["max_ms"], "{:.0f}"),
        f(r["server_hwm_kb"] / 1024, "{:.1f} MB"),
        f(r["server_cpu_pct"], "{:.0f} %"),
        f(r.get("bytes_per_envelope"), "{:.0f}"),
        f(r["loadgen_cpu_pct"], "{:.0f} %"),
    ]) + " |")
print()
for r in rows:
    extra = (f"{r['case']}: sent {r['sent']:,}, acked {r['acked']:,}, connected {r['connected']}/{r['agents']} "
             f"in {r['connect_s']} s, resent {r['resent']}, duplicate acks {r['duplicate_acks']}, "
             f"reconnects {r['reconnects']}, loadgen errors {r['errors']}, "
             f"envelope {r['mean_envelope_bytes']} B")
    if r["server"] == "collector":
        rss = r["server_rss_samples_kb"]
        extra += (f"\n    stored {r['stored']:,}, acks sent {r['acks_sent']:,.0f}, acks dropped {r['acks_dropped']:,.0f}, "
                  f"duplicates {r['duplicates']:,.0f}, commits {r['commits']:,.0f} "
                  f"({r['stored'] / r['commits']:.0f} env/commit), commit errors {r['commit_errors']:.0f}, "
                  f"rejected {r['rejected']:.0f}" if r["commits"] else "")
        extra += (f"\n    disk: {r['write_bytes']:,} B written ({r['cancelled_write_bytes']:,} cancelled), "
                  f"store size {r['db_bytes']:,} B; RSS: peak {r['server_hwm_kb']/1024:.1f} MB, "
                  f"end {r['server_rss_end_kb']/1024:.1f} MB, sampled 1/s min..max "
                  f"{min(rss)/1024 if rss else 0:.1f}..{max(rss)/1024 if rss else 0:.1f} MB")
        extra += "\n    collector RSS every 5 s (MB): " + " ".join(f"{v/1024:.0f}" for v in rss[::5])
        if r.get("mosquitto_hwm_kb"):
            extra += f"\n    external Mosquitto peak RSS: {r['mosquitto_hwm_kb']/1024:.1f} MB"
        if r["log_issues"].strip():
            extra += "\n    collector log warnings/errors (count, line):\n" + r["log_issues"].rstrip()
    print(extra)
print("\nload average (1/5/15 min) after each case:", "; ".join(loads))
goals = []
for name in ("embedded", "external"):
    r = by.get(name)
    if r and ref:
        pct = 100 * r["rate_per_s"] / ref
        goals.append(f"MQTT {name}: {pct:.0f} % of Mosquitto (goal >= 60 %): {'MET' if pct >= 60 else 'MISSED'}")
r = by.get("grpc")
if r:
    goals.append(f"gRPC: {r['rate_per_s']:,.0f}/s (goal >= 30,000/s): {'MET' if r['rate_per_s'] >= 30000 else 'MISSED'}")
for name in ("embedded", "external", "grpc"):
    r = by.get(name)
    if r and r["resent"]:
        goals.append(f"note {name}: {r['resent']:,} envelopes had to be resent (no ack within the loadgen's --resend-ms)")
    if r and r["p99_ms"] is not None:
        goals.append(f"p99 {name}: {r['p99_ms']:.1f} ms (goal <= 250 ms): {'MET' if r['p99_ms'] <= 250 else 'MISSED'}")
    if r and r.get("bytes_per_envelope") is not None:
        b = r["bytes_per_envelope"]
        goals.append(f"disk {name}: {b:.0f} B written per envelope (goal <= 1024): {'MET' if b <= 1024 else 'MISSED'}")
base, new = by.get("embedded_base"), by.get("embedded")
if base and new and base["rate_per_s"] and base["p50_ms"] and base["p99_ms"]:
    goals.append(f"embedded / embedded_base (BASE_BIN): acked/s {new['rate_per_s'] / base['rate_per_s']:.2f}x, "
                 f"p50 {new['p50_ms'] / base['p50_ms']:.2f}x, p99 {new['p99_ms'] / base['p99_ms']:.2f}x, "
                 f"collector CPU {new['server_cpu_pct']:.0f} % / {base['server_cpu_pct']:.0f} %, "
                 f"peak RSS {new['server_hwm_kb'] / 1024:.1f} / {base['server_hwm_kb'] / 1024:.1f} MB")
base, new = by.get("idle_base"), by.get("idle")
if base and new:
    extra = (new["server_hwm_kb"] - base["server_hwm_kb"]) / new["agents"]
    goals.append(f"idle / idle_base (BASE_BIN), {new['agents']} agents every 10 s: peak RSS "
                 f"{new['server_hwm_kb'] / 1024:.1f} / {base['server_hwm_kb'] / 1024:.1f} MB "
                 f"({extra:+.1f} KiB per connection), collector CPU {new['server_cpu_pct']:.1f} % / "
                 f"{base['server_cpu_pct']:.1f} %, p50 {new['p50_ms']:.1f} / {base['p50_ms']:.1f} ms")
r = by.get("overload")
if r:
    goals.append(f"overload: peak RSS {r['server_hwm_kb']/1024:.1f} MB with {r['agents']} x {r['window']} "
                 f"= {r['agents'] * r['window']:,} envelopes offered in flight (bounded? see RSS samples above)")
print("\ngoals:\n  " + "\n  ".join(goals))
EOF
} | tee "$OUT"
echo "report saved to $OUT" >&2
