#!/usr/bin/env bash
# Flood benchmark of sobre-collector (issue 8; BENCHMARKS.md "Flood"):
# does one agent sending as fast as it can slow down everyone else?
#
# For each transport in MODES, in one run, each case against a fresh
# collector (embedded broker, default config but for ports, data_dir and
# [security] require_enrolment = false: simulated agents do not enrol),
# on free loopback ports in a temp dir on a real disk:
#   normal  AGENTS well-behaved agents, one envelope every INTERVAL_MS each
#   flood   the same agents, plus ABUSIVE agents flooding (open loop, up to
#           ABUSIVE_INFLIGHT in flight, never slowing down on refusals),
#           from a second sobre-loadgen process on one thread (one machine
#           at full speed), started first and stopping after the measure,
#           so that the well-behaved agents' latency is not the load
#           generator's own scheduling
# repeated ROUNDS times (normal, flood, normal, flood, ...). The figures
# that matter are the well-behaved agents' publish->ack latency (p50, p99)
# and acked/s, flood / normal of the same run; goal: latency within 2x.
# Also reported: what the abusive agents sent and got acked, the
# collector's refusals (rate_limited), the MQTT packets its guard held
# back (sobre_mqtt_throttled_total), CPU, peak RSS and log size.
#
# The load comes from tests/src/bin/sobre-loadgen.rs (`--interval-ms`,
# `--abusive`; see `sobre-loadgen --help`).
#
# Usage: bench/flood.sh          (about 2 minutes with the defaults)
# Environment (defaults in brackets):
#   AGENTS [100] INTERVAL_MS [1000] WINDOW [16] DURATION [20] WARMUP [3]
#   ABUSIVE [1] ABUSIVE_INFLIGHT [1024] MODES ["mqtt grpc"] ROUNDS [1]
#   SKIP_BUILD [0]   1: use the release binaries already in target/release
#   KEEP_TMP [0]     1: keep the work dir (stores, logs)
#   COLLECTOR_EXTRA_TOML  extra sections for the collector's config, e.g.
#                    $'[limits]\nmax_envelopes_per_s = 20.0'
#   OUT [target/bench-results/flood-<time>.txt]   copy of the report
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

AGENTS=${AGENTS:-100}
INTERVAL_MS=${INTERVAL_MS:-1000}
WINDOW=${WINDOW:-16}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
ABUSIVE=${ABUSIVE:-1}
ABUSIVE_INFLIGHT=${ABUSIVE_INFLIGHT:-1024}
MODES=${MODES:-mqtt grpc}
ROUNDS=${ROUNDS:-1}
mkdir -p "$ROOT/target/bench-results"
OUT=${OUT:-$ROOT/target/bench-results/flood-$(date +%Y%m%d-%H%M%S).txt}

need_pkg curl curl
need_pkg python3 python3

release_bins sobre-collector sobre-loadgen

bench_init
CODE_STATE=$(code_state)
echo "code: $CODE_STATE" >&2
RESULTS=$BENCH_TMP/results.jsonl
: >"$RESULTS"
echo "machine: $(nproc) CPUs, $(free -m | awk '/^Mem:/ {print $2 " MB RAM"}'); $(uname -sr)" >&2
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# flood_case NAME MODE(mqtt|grpc) ABUSIVE
flood_case() {
  local name=$1 mode=$2 abusive=$3
  local dir=$BENCH_TMP/$name http grpc mqtt
  mkdir -p "$dir"
  http=$(free_port)
  grpc=$(free_port)
  mqtt=$(free_port)
  echo "== $name: $AGENTS agents every ${INTERVAL_MS} ms over $mode, $abusive abusive, ${DURATION}s" >&2
  cat >"$dir/collector.toml" <<EOF
data_dir = "$dir/data"
[http]
listen = "127.0.0.1:$http"
[mqtt]
embedded = true
listen = "127.0.0.1:$mqtt"
[grpc]
listen = "127.0.0.1:$grpc"
# The load generator's simulated agents do not enrol (SECURITY.md).
[security]
require_enrolment = false
${COLLECTOR_EXTRA_TOML:-}
EOF
  SOBRE_LOG=${SOBRE_LOG:-info,rumqttd=warn,rumqttd::server::broker=off,rumqttc=warn} \
    "$BIN/sobre-collector" --config "$dir/collector.toml" >"$dir/collector.log" 2>&1 </dev/null &
  local pid=$!
  track "$pid"
  wait_http "http://127.0.0.1:$http/health" 30
  local c0 t0
  c0=$(cpu_ticks "$pid")
  t0=$(date +%s.%N)
  local target
  if [ "$mode" = grpc ]; then target=(--grpc "http://127.0.0.1:$grpc"); else target=(--broker "127.0.0.1:$mqtt"); fi
  local flood_pid=""
  : >"$dir/abusive.json"
  if [ "$abusive" -gt 0 ]; then
    "$BIN/sobre-loadgen" "$mode" "${target[@]}" --agents 0 --abusive "$abusive" \
      --abusive-inflight "$ABUSIVE_INFLIGHT" --threads 1 --warmup 0 \
      --duration $((WARMUP + DURATION + 3)) --id-prefix "fl-$name" \
      >"$dir/abusive.json" 2>"$dir/abusive.log" &
    flood_pid=$!
    track "$flood_pid"
    local i
    for i in $(seq 1 300); do
      grep -q "agents connected in" "$dir/abusive.log" 2>/dev/null && break
      sleep 0.1
    done
  fi
  local ok=1 TIMEFORMAT='%R %U %S'
  { time "$BIN/sobre-loadgen" "$mode" "${target[@]}" --agents "$AGENTS" --window "$WINDOW" \
    --interval-ms "$INTERVAL_MS" --duration "$DURATION" --warmup "$WARMUP" \
    --id-prefix "fl-$name" >"$dir/loadgen.json" 2>"$dir/loadgen.log"; } 2>"$dir/loadgen.cpu" || ok=0
  [ -n "$flood_pid" ] && { wait "$flood_pid" || echo "   $name: the abusive loadgen failed: $(tail -3 "$dir/abusive.log")" >&2; }
  local c1 t1 hwm health
  c1=$(cpu_ticks "$pid")
  t1=$(date +%s.%N)
  hwm=$(status_kb "$pid" VmHWM)
  health=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http/health" || echo 000)
  curl -sf "http://127.0.0.1:$http/metrics" >"$dir/metrics.txt" || : >"$dir/metrics.txt"
  cut -d' ' -f1-3 /proc/loadavg >"$dir/loadavg.txt"
  stop_pid "$pid"
  local log_bytes
  log_bytes=$(stat -c %s "$dir/collector.log")
  if [ "$ok" = 0 ] || ! [ -s "$dir/loadgen.json" ]; then
    echo "   $name: loadgen produced no result; its log:" >&2
    tail -20 "$dir/loadgen.log" >&2
    return 0
  fi
  python3 - "$dir" "$name" "$mode" "$abusive" "$hwm" "$c0" "$c1" "$t0" "$t1" "$health" "$log_bytes" >>"$RESULTS" <<'EOF'
import json, sys
d, name, mode, abusive, hwm, c0, c1, t0, t1, health, log_bytes = sys.argv[1:]
r = json.load(open(f"{d}/loadgen.json"))
flood = open(f"{d}/abusive.json").read().strip()
if flood:
    r["abusive"] = json.loads(flood)["abusive"]
wall, u, s = open(f"{d}/loadgen.cpu").read().split()
m = {}
for line in open(f"{d}/metrics.txt"):
    if line.strip() and not line.startswith("#"):
        k, _, v = line.rpartition(" ")
        m[k] = float(v)
r.update(case=name, transport=mode, flood=int(abusive) > 0,
         server_hwm_kb=int(hwm),
         server_cpu_pct=(int(c1) - int(c0)) / 100 / (float(t1) - float(t0)) * 100,
         loadgen_cpu_pct=(float(u) + float(s)) / float(wall) * 100,
         health=int(health), log_bytes=int(log_bytes),
         received=m.get("sobre_envelopes_received_total", 0),
         stored=m.get("sobre_envelopes_stored_total", 0),
         rate_limited=m.get('sobre_envelopes_rejected_total{reason="rate_limited"}', 0),
         mqtt_throttled=m.get("sobre_mqtt_throttled_total", 0),
         rejected=sum(v for k, v in m.items() if k.startswith("sobre_envelopes_rejected_total")),
         loadavg=open(f"{d}/loadavg.txt").read().strip())
print(json.dumps(r))
EOF
}

for round in $(seq 1 "$ROUNDS"); do
  for mode in $MODES; do
    flood_case "${mode}-normal-$round" "$mode" 0
    flood_case "${mode}-flood-$round" "$mode" "$ABUSIVE"
  done
done

{
echo "code: $CODE_STATE"
echo "machine: $(nproc) CPUs, $(free -m | awk '/^Mem:/ {print $2 " MB RAM"}'), $(uname -sr); date: $(date -Is)"
echo "parameters: AGENTS=$AGENTS INTERVAL_MS=$INTERVAL_MS WINDOW=$WINDOW DURATION=$DURATION WARMUP=$WARMUP ABUSIVE=$ABUSIVE ABUSIVE_INFLIGHT=$ABUSIVE_INFLIGHT ROUNDS=$ROUNDS${COLLECTOR_EXTRA_TOML:+ COLLECTOR_EXTRA_TOML=$(printf %q "$COLLECTOR_EXTRA_TOML")}"
python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def f(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)
print("\nsobre flood benchmark (well-behaved agents: publish -> ack after commit;")
print("abusive: open loop, refused envelopes are not acked)\n")
hdr = ("case", "well-behaved acked/s", "p50 ms", "p99 ms", "max ms", "unacked", "resent",
       "abusive sent/s", "abusive acked/s", "rate_limited", "collector CPU", "peak RSS", "log", "load")
print("| " + " | ".join(hdr) + " |")
print("|" + "|".join("---" for _ in hdr) + "|")
for r in rows:
    a = r.get("abusive") or {}
    print("| " + " | ".join([
        r["case"], f(r["rate_per_s"], "{:,.1f}"), f(r["p50_ms"], "{:.1f}"), f(r["p99_ms"], "{:.1f}"),
        f(r["max_ms"], "{:.0f}"), f(r["unacked"]), f(r["resent"]),
        f(a.get("sent_per_s")), f(a.get("acked_per_s"), "{:,.1f}"), f(r["rate_limited"]),
        f(r["server_cpu_pct"], "{:.0f} %"), f(r["server_hwm_kb"] / 1024, "{:.1f} MB"),
        f(r["log_bytes"] / 1e6, "{:.1f} MB"), r["loadavg"].split()[0],
    ]) + " |")
print()
goals = []
by = {}
for r in rows:
    by.setdefault((r["transport"], r["case"].rsplit("-", 1)[1]), {})["flood" if r["flood"] else "normal"] = r
for (mode, rnd), pair in by.items():
    n, fl = pair.get("normal"), pair.get("flood")
    if not n or not fl or not n["p50_ms"] or not fl["p50_ms"]:
        goals.append(f"{mode} round {rnd}: incomplete")
        continue
    r50 = fl["p50_ms"] / n["p50_ms"]
    r99 = fl["p99_ms"] / n["p99_ms"]
    thr = fl["rate_per_s"] / n["rate_per_s"] if n["rate_per_s"] else 0
    met = r50 <= 2 and r99 <= 2
    goals.append(f"{mode} round {rnd}: flood/normal p50 {r50:.2f}x, p99 {r99:.2f}x, acked/s {thr:.2f}x; "
                 f"well-behaved unacked at the end {fl['unacked']}, resent {fl['resent']}; "
                 f"collector /health {fl['health']} after the flood; latency within 2x: {'MET' if met else 'MISSED'}")
print("goals:\n  " + "\n  ".join(goals))
for r in rows:
    a = r.get("abusive")
    if a:
        print(f"{r['case']}: abusive sent {a['sent']:,} ({a['sent_per_s']:,.0f}/s), acked {a['acked']:,}; "
              f"collector received {r['received']:,.0f}, stored {r['stored']:,.0f}, rejected {r['rejected']:,.0f} "
              f"(rate_limited {r['rate_limited']:,.0f}); MQTT packets held back by the guard "
              f"{r.get('mqtt_throttled', 0):,.0f}; loadgen CPU {r['loadgen_cpu_pct']:.0f} %")
EOF
} | tee "$OUT"
echo "report saved to $OUT" >&2
