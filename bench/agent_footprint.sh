#!/usr/bin/env bash
# Footprint of sobre-agent next to Debian's prometheus-node-exporter, side by
# side on this machine (BENCHMARKS.md, "Agent footprint", explains it).
#
#   sobre-agent (release) with its shipped defaults, interval_ms = 10000,
#   over MQTT to a release sobre-collector with its embedded broker, on
#   loopback; its storage scan (background, first one minute after start)
#   over a home holding a realistic tree (bench/gen_tree.py, HOME_FILES
#   files, seed 42): storage.roots and index_dir point there (as root, the
#   default roots would be the machine's real homes);
#   prometheus-node-exporter (its default collectors) on a free loopback
#   port, scraped every 10 s by curl --compressed (gzip), as Prometheus
#   would.
#
# Measured:
#   the daily scan apart: CPU of the scan process (the agent's reaped
#   children: cutime + cstime), its peak RSS (its own VmHWM, as the agent
#   reports it), and the agent's RSS before and after it;
#   the steady window (DURATION s after the scan, half an interval after a
#   report so both snapshots fall between two reports), for each: RSS at
#   the end (VmRSS), peak (VmHWM), CPU % of one core (utime + stime over
#   the wall time);
#   per subsystem: the probes (`sobre-agent cost`: CPU per sample of the
#   usage, power and footprint probes, times the reports), the rest of a
#   report (spool with fsync, encoding, MQTT, acks, timers: steady CPU less
#   the probes), start-up, the scan;
#   24 h of the default schedule: start-up + one scan + 8,640 reports at
#   the steady rate, in % of one core;
#   bytes per report: agent payload (its own agent_bytes_sent counter, as
#   stored by the collector) and TCP payload bytes (ss bytes_sent of its
#   socket, MQTT framing, pings and acks included, IP/TCP headers not);
#   node_exporter: gzip bytes per scrape (curl %{size_download});
#   the agent's self-report against /proc: the last stored sample's CPU
#   seconds and RSS beside /proc at the end, its bytes beside ss;
#   the agent's release binary size.
#
# Usage: DURATION=300 bench/agent_footprint.sh
# Environment: DURATION [300] seconds (a multiple of 10 keeps both snapshots
#   between two reports), HOME_FILES [20000], SKIP_BUILD [0], KEEP_TMP [0],
#   OUT [target/bench-results/agent-footprint-<time>.txt]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

DURATION=${DURATION:-300}
HOME_FILES=${HOME_FILES:-20000}
INTERVAL_S=10
mkdir -p "$ROOT/target/bench-results"
OUT=${OUT:-$ROOT/target/bench-results/agent-footprint-$(date +%Y%m%d-%H%M%S).txt}

need_pkg /usr/bin/prometheus-node-exporter prometheus-node-exporter
need_pkg curl curl
need_pkg python3 python3
need_pkg ss iproute2
need_pkg size binutils

BIN=$ROOT/target/release
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "building release binaries..." >&2
  cargo build --release -p sobre-agent -p sobre-collector --bins >&2
fi
for b in sobre-collector sobre-agent; do
  [ -x "$BIN/$b" ] || { echo "$BIN/$b is missing: cargo build --release --workspace --bins" >&2; exit 1; }
done

# The home's tree, made once (as bench/scan.sh does, not in /tmp).
HOME_TREE=$ROOT/target/bench-tree/home-$HOME_FILES
if [ ! -f "$HOME_TREE.manifest.json" ]; then
  echo "generating a home of $HOME_FILES files under $HOME_TREE (once)" >&2
  rm -rf "$HOME_TREE"
  mkdir -p "$(dirname "$HOME_TREE")"
  python3 "$ROOT/bench/gen_tree.py" "$HOME_TREE" --files "$HOME_FILES" --seed 42 >/dev/null
fi

bench_init
CODE_STATE=$(code_state)
echo "code: $CODE_STATE" >&2
D=$BENCH_TMP
HTTP=$(free_port)
MQTT=$(free_port)
GRPC=$(free_port)
NE_PORT=$(free_port)
AGENT_ID=bench-footprint
echo "machine: $(nproc) CPUs, $(free -m | awk '/^Mem:/ {print $2 " MB RAM"}'); load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

cat >"$D/collector.toml" <<EOF
data_dir = "$D/data"
[http]
listen = "127.0.0.1:$HTTP"
[mqtt]
embedded = true
listen = "127.0.0.1:$MQTT"
[grpc]
listen = "127.0.0.1:$GRPC"
# Measures the agent's cost, not enrolment: the agent runs unenrolled.
[security]
require_enrolment = false
EOF
"$BIN/sobre-collector" --config "$D/collector.toml" >"$D/collector.log" 2>&1 </dev/null &
COLLECTOR=$!
track "$COLLECTOR"
wait_http "http://127.0.0.1:$HTTP/health" 30

# The agent with its shipped defaults, except where it sends, spools and
# which home it scans (a fresh index: the first scan is a full one).
cat >"$D/agent.toml" <<EOF
agent_id = "$AGENT_ID"
interval_ms = $((INTERVAL_S * 1000))
[transport]
kind = "mqtt"
mqtt_broker = "mqtt://127.0.0.1:$MQTT"
[spool]
dir = "$D/spool"
[storage]
roots = ["$HOME_TREE"]
index_dir = "$D/index"
EOF
"$BIN/sobre-agent" --config "$D/agent.toml" >"$D/agent.log" 2>&1 </dev/null &
AGENT=$!
track "$AGENT"
AGENT_START=$(date +%s.%N)

/usr/bin/prometheus-node-exporter --web.listen-address="127.0.0.1:$NE_PORT" >"$D/node_exporter.log" 2>&1 </dev/null &
NE=$!
track "$NE"
NE_START=$(date +%s.%N)
wait_http "http://127.0.0.1:$NE_PORT/metrics" 30

# Latest stored usage sample of the agent: "seq agent_bytes_sent count
# agent_cpu_seconds agent_rss_bytes".
latest_sample() {
  curl -sf "http://127.0.0.1:$HTTP/api/v1/agents/$AGENT_ID/samples?since=0&limit=10000" |
    python3 -c 'import json,sys; s=json.load(sys.stdin); l=s[-1]; print(l["seq"], l["agent_bytes_sent"], len(s), l["agent_cpu_seconds"], l["agent_rss_bytes"]) if s else print("0 0 0 0 0")' 2>/dev/null ||
    echo "0 0 0 0 0"
}

# bytes_sent, bytes_acked and bytes_received of the agent's TCP socket(s).
agent_tcp() {
  ss -tinpH 2>/dev/null | awk -v pid="pid=$AGENT," '
    index($0, pid) { want = 1 }
    want {
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^bytes_sent:/) { split($i, a, ":"); s += a[2] }
        if ($i ~ /^bytes_acked:/) { split($i, a, ":"); k += a[2] }
        if ($i ~ /^bytes_received:/) { split($i, a, ":"); r += a[2]; want = 0 }
      }
    }
    END { printf "%d %d %d\n", s, k, r }'
}

# Wait for the first usage report (start-up), then for the scheduled scan
# (first_delay_ms after start) to be spooled, then half an interval, so
# both snapshots of the steady window fall between two reports.
echo "waiting for the agent's first usage report..." >&2
for _ in $(seq 1 $((INTERVAL_S * 3 * 10))); do
  read -r seq _ _ < <(latest_sample)
  [ "$seq" != 0 ] && break
  sleep 0.1
done
[ "$seq" != 0 ] || { echo "no usage report from the agent within $((INTERVAL_S * 3)) s; agent log:" >&2; tail -20 "$D/agent.log" >&2; exit 1; }
STARTUP_TICKS=$(cpu_ticks "$AGENT")
RSS_BEFORE_SCAN=$(status_kb "$AGENT" VmRSS)
echo "waiting for the scheduled scan of $HOME_FILES files..." >&2
until grep -q "storage summary spooled" "$D/agent.log"; do
  kill -0 "$AGENT" 2>/dev/null || { echo "the agent exited; its log:" >&2; tail -20 "$D/agent.log" >&2; exit 1; }
  sleep 1
done
SCAN_TICKS=$(child_ticks "$AGENT")
SCAN_PEAK=$(sed -n 's/.*storage summary spooled.*scan_peak_rss_bytes=\([0-9]*\).*/\1/p' "$D/agent.log" | head -1)
sleep $((INTERVAL_S + INTERVAL_S / 2))
RSS_AFTER_SCAN=$(status_kb "$AGENT" VmRSS)

snapshot() { # snapshot NAME -> NAME.txt
  {
    echo "t $(date +%s.%N)"
    echo "agent_ticks $(cpu_ticks "$AGENT")"
    echo "agent_child_ticks $(child_ticks "$AGENT")"
    echo "ne_ticks $(cpu_ticks "$NE")"
    echo "agent_rss $(status_kb "$AGENT" VmRSS)"
    echo "agent_hwm $(status_kb "$AGENT" VmHWM)"
    echo "ne_rss $(status_kb "$NE" VmRSS)"
    echo "ne_hwm $(status_kb "$NE" VmHWM)"
    echo "agent_tcp $(agent_tcp)"
    echo "sample $(latest_sample)"
  } >"$D/$1.txt"
}
snapshot start
echo "measuring for ${DURATION}s (started $(date +%T))..." >&2

# Prometheus' part: a scrape every 10 s, gzip accepted.
END=$(( $(date +%s) + DURATION ))
(
  while [ "$(date +%s)" -lt "$END" ]; do
    curl -s --compressed -o /dev/null -w '%{size_download}\n' "http://127.0.0.1:$NE_PORT/metrics" >>"$D/scrapes.txt" || true
    sleep "$INTERVAL_S"
  done
) &
SCRAPER=$!
track "$SCRAPER"

# Load average once a minute, for the report.
(
  while [ "$(date +%s)" -lt "$END" ]; do
    cut -d' ' -f1-3 /proc/loadavg >>"$D/loadavg.txt"
    sleep 60
  done
) &
track $!

while [ "$(date +%s)" -lt "$END" ]; do
  kill -0 "$AGENT" 2>/dev/null || { echo "the agent exited early; its log:" >&2; tail -20 "$D/agent.log" >&2; exit 1; }
  sleep 1
done
snapshot end
wait "$SCRAPER" 2>/dev/null || true
UNCOMPRESSED=$(curl -s -o /dev/null -w '%{size_download}' "http://127.0.0.1:$NE_PORT/metrics" || echo 0)
AGENT_TOTAL_TICKS=$(cpu_ticks "$AGENT")
# What the probes cost per sample, measured by the agent binary itself.
COST=$("$BIN/sobre-agent" --config "$D/agent.toml" cost --samples 2000 2>/dev/null |
  awk '$2 ~ /^[0-9]+$/ { printf "%s=%s ", $1, $3 }')
NE_TOTAL_TICKS=$(cpu_ticks "$NE")
NOW=$(date +%s.%N)
curl -sf "http://127.0.0.1:$HTTP/metrics" >"$D/collector-metrics.txt" || true

AGENT_BIN=$BIN/sobre-agent
strip -o "$D/sobre-agent.stripped" "$AGENT_BIN"
SIZE_LINE=$(size "$AGENT_BIN" | tail -1)
issues=$(grep -E ' (WARN|ERROR) ' "$D/agent.log" "$D/collector.log" | head -10 || true)

{
echo "code: $CODE_STATE"
echo "machine: $(nproc) CPUs, $(free -m | awk '/^Mem:/ {print $2 " MB RAM"}'), $(uname -sr); date: $(date -Is)"
python3 - "$D" "$DURATION" "$INTERVAL_S" "$UNCOMPRESSED" "$AGENT_TOTAL_TICKS" "$NE_TOTAL_TICKS" \
  "$AGENT_START" "$NE_START" "$NOW" "$(stat -c %s "$AGENT_BIN")" "$(stat -c %s "$D/sobre-agent.stripped")" \
  "$SIZE_LINE" "$(stat -c %s /usr/bin/prometheus-node-exporter)" "$issues" \
  "$STARTUP_TICKS" "$SCAN_TICKS" "${SCAN_PEAK:-0}" "$RSS_BEFORE_SCAN" "$RSS_AFTER_SCAN" \
  "$COST" "$HOME_FILES" "$(du -s --apparent-size -BM "$HOME_TREE" | cut -f1)" <<'EOF'
import sys
(d, duration, interval, uncompressed, a_total, ne_total, a_start, ne_start, now,
 bin_size, stripped, size_line, ne_bin, issues, startup_ticks, scan_ticks, scan_peak,
 rss_before_scan, rss_after_scan, cost, home_files, home_size) = sys.argv[1:]
def snap(name):
    out = {}
    for line in open(f"{d}/{name}.txt"):
        k, *v = line.split()
        out[k] = v
    return out
s, e = snap("start"), snap("end")
wall = float(e["t"][0]) - float(s["t"][0])
cpu = lambda k: (int(e[k][0]) - int(s[k][0])) / 100 / wall * 100
a_cpu, ne_cpu = cpu("agent_ticks"), cpu("ne_ticks")
a_cpu_all = int(a_total) / 100 / (float(now) - float(a_start)) * 100
ne_cpu_all = int(ne_total) / 100 / (float(now) - float(ne_start)) * 100
kb = lambda snap_, k: int(snap_[k][0])
seq0, sent0, n0 = map(int, s["sample"][:3])
seq1, sent1, n1 = map(int, e["sample"][:3])
rep_cpu1, rep_rss1 = float(e["sample"][3]), int(e["sample"][4])
reports = seq1 - seq0
payload = (sent1 - sent0) / reports if reports else float("nan")
tcp_s0, tcp_a0, tcp_r0 = map(int, s["agent_tcp"])
tcp_s1, tcp_a1, tcp_r1 = map(int, e["agent_tcp"])
tcp_sent = (tcp_s1 - tcp_s0) / reports if reports else float("nan")
tcp_recv = (tcp_r1 - tcp_r0) / reports if reports else float("nan")
try:
    scrapes = [int(x) for x in open(f"{d}/scrapes.txt").read().split()]
except FileNotFoundError:
    scrapes = []
gz = sum(scrapes) / len(scrapes) if scrapes else float("nan")
try:
    loads = [l.strip() for l in open(f"{d}/loadavg.txt")]
except FileNotFoundError:
    loads = []
a_rss, a_hwm = kb(e, "agent_rss") / 1024, kb(e, "agent_hwm") / 1024
ne_rss, ne_hwm = kb(e, "ne_rss") / 1024, kb(e, "ne_hwm") / 1024
r = lambda x, y: f"{x / y:.1f}x" if y else "-"
print(f"\nagent footprint, {wall:.0f} s steady window side by side, one report / scrape every {interval} s;"
      f" home: {int(home_files):,} files, {home_size}B (gen_tree.py, seed 42)\n")
print("| | sobre-agent | node_exporter | node_exporter / sobre-agent |")
print("|---|---|---|---|")
print(f"| RSS at the end (VmRSS) | {a_rss:.2f} MB | {ne_rss:.2f} MB | {r(ne_rss, a_rss)} |")
print(f"| peak RSS of the process (VmHWM) | {a_hwm:.2f} MB | {ne_hwm:.2f} MB | {r(ne_hwm, a_hwm)} |")
print(f"| CPU, % of one core, steady window | {a_cpu:.4f} % | {ne_cpu:.4f} % | {r(ne_cpu, a_cpu)} |")
print(f"| CPU since start (incl. start-up and the scan) | {a_cpu_all:.4f} % | {ne_cpu_all:.4f} % | {r(ne_cpu_all, a_cpu_all)} |")
print(f"| bytes per report / scrape | {payload:.0f} B payload, {tcp_sent:.0f} B TCP sent (+{tcp_recv:.0f} B received) | {gz:,.0f} B gzip ({int(uncompressed):,} B plain) | {r(gz, tcp_sent)} (vs TCP sent) |")
print(f"| reports / scrapes in the window | {reports} | {len(scrapes)} | |")
print(f"| binary | {int(bin_size)/1e6:.2f} MB ({int(stripped)/1e6:.2f} MB stripped) | {int(ne_bin)/1e6:.2f} MB | |")

# Per subsystem, and 24 h of the default schedule.
steady_s = (int(e["agent_ticks"][0]) - int(s["agent_ticks"][0])) / 100
per_report = steady_s / reports if reports else float("nan")
probes = {k: float(v) for k, v in (x.split("=") for x in cost.split())}
probe_us = sum(probes.values())
scan_s = int(scan_ticks) / 100
startup_s = int(startup_ticks) / 100
day = 86400
reports_day = day / int(interval)
day_s = startup_s + scan_s + reports_day * per_report
print(f"\nper subsystem (CPU time of the agent and its scan process, /proc; probes from `sobre-agent cost`):\n")
print("| subsystem | CPU | per day (default schedule) | % of one core over 24 h |")
print("|---|---|---|---|")
for name, us in probes.items():
    print(f"| probe: {name} | {us:.1f} µs per report | {us * reports_day / 1e6:.2f} s | {us * reports_day / 1e6 / day * 100:.5f} % |")
rest_us = per_report * 1e6 - probe_us
print(f"| spool (fsync), encoding, MQTT, acks, timers: the rest of a report | {rest_us:.0f} µs per report | {rest_us * reports_day / 1e6:.2f} s | {rest_us * reports_day / 1e6 / day * 100:.5f} % |")
print(f"| a report, all told (steady window / reports) | {per_report * 1e3:.2f} ms | {per_report * reports_day:.2f} s | {per_report * reports_day / day * 100:.5f} % |")
print(f"| start-up (to the first report) | {startup_s:.2f} s once | {startup_s:.2f} s | {startup_s / day * 100:.5f} % |")
print(f"| the daily scan (first, full: nothing in the index), scan process | {scan_s:.2f} s | {scan_s:.2f} s | {scan_s / day * 100:.5f} % |")
print(f"| **24 h: start-up + one scan + {reports_day:,.0f} reports** | | **{day_s:.1f} s** | **{day_s / day * 100:.4f} %** |")
print(f"\nscan process: peak RSS {int(scan_peak)/2**20:.2f} MB (its own VmHWM);"
      f" the agent's RSS {int(rss_before_scan)/1024:.2f} MB before the scan, {int(rss_after_scan)/1024:.2f} MB after it")

# The agent's self-report against /proc (the last stored sample was taken
# at most one interval before the end snapshot).
proc_cpu = (int(e["agent_ticks"][0]) + int(e["agent_child_ticks"][0])) / 100
proc_rss = kb(e, "agent_rss") * 1024
frame = tcp_sent - payload
print("\nself-report against /proc (last stored sample vs the end snapshot):")
print(f"  CPU seconds: reported {rep_cpu1:.2f} s, /proc (utime+stime+cutime+cstime) {proc_cpu:.2f} s")
print(f"  RSS: reported {rep_rss1/2**20:.2f} MB, /proc VmRSS {proc_rss/2**20:.2f} MB")
print(f"  bytes: reported {payload:.0f} B payload per report, ss {tcp_sent:.0f} B: {frame:.0f} B of MQTT framing per report")
self_ok = (abs(proc_cpu - rep_cpu1) <= 0.05 and abs(proc_rss - rep_rss1) <= 0.05 * proc_rss
           and 0 < frame < 120)
print(f"  agrees: {'YES' if self_ok else 'NO'} (CPU within 0.05 s, RSS within 5 %, framing 0-120 B)")

print(f"\nsize(1) of sobre-agent (text data bss dec hex): {size_line}")
print("TCP bytes are TCP payload (MQTT packets: PUBLISH, PUBACK, PINGREQ...) from ss bytes_sent,"
      " without IP/TCP headers (about 52 B more per segment on loopback).")
print("load average (1/5/15 min), once a minute:", "; ".join(loads))
def verdict(ok):
    return "MET" if ok else "MISSED"
sp = int(scan_peak) / 2**20
print("\ngoals:")
print(f"  agent RSS {a_rss:.2f} MB, peak {a_hwm:.2f} MB (the agent process) <= 8 MB: {verdict(a_hwm <= 8)}")
print(f"  memory of the scan given back: agent RSS after {int(rss_after_scan)/1024:.2f} MB <= before {int(rss_before_scan)/1024:.2f} MB + 0.5 MB: {verdict(int(rss_after_scan) <= int(rss_before_scan) + 512)}")
print(f"  agent CPU, steady window {a_cpu:.4f} % <= 0.02 %: {verdict(a_cpu <= 0.02)}")
print(f"  agent CPU over 24 h of the default schedule {day_s / day * 100:.4f} % <= 0.05 %: {verdict(day_s / day * 100 <= 0.05)}")
print(f"  agent bytes per report: {payload:.0f} B payload, {tcp_sent:.0f} B on the wire <= 300 B: {verdict(tcp_sent <= 300)}")
print(f"  self-report matches /proc: {verdict(self_ok)}")
if issues.strip():
    print("\nwarnings/errors in the agent or collector log:\n" + issues)
EOF
} | tee "$OUT"
echo "report saved to $OUT" >&2
