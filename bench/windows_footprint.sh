#!/usr/bin/env bash
# The Windows agent's footprint under Wine beside the Linux agent, same run,
# same collector (issue 16; BENCHMARKS.md, "The agent on Windows").
#
#   sobre-agent (Linux, release) and sobre-agent.exe (agent/windows/build,
#   run by Wine 8 in a private copy of target/windows/wineprefix), each
#   with its shipped defaults but interval_ms = 10000, its own spool, the
#   storage scan off (bench/agent_footprint.sh and bench/scan_peak.sh
#   measure scans), over MQTT to one release sobre-collector with its
#   embedded broker, on loopback.
#
# Measured over DURATION s, after both have sent their first reports:
#   each agent's RSS at the end and its peak (VmHWM; for the .exe, the
#   Linux process Wine runs it in), CPU % of one core (utime + stime over
#   the wall time), reports stored;
#   Wine's own processes (wineserver, services.exe, winedevice.exe, ...:
#   every process of the prefix but the agent) apart, as Wine's overhead:
#   a real Windows has its own service manager and kernel instead;
#   the .exe's size beside the Linux binary's.
#
# Usage: DURATION=180 bench/windows_footprint.sh
# Environment: DURATION [180], SKIP_BUILD [0], KEEP_TMP [0],
#   OUT [target/bench-results/windows-footprint-<time>.txt]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

DURATION=${DURATION:-180}
INTERVAL_S=10
mkdir -p "$ROOT/target/bench-results"
OUT=${OUT:-$ROOT/target/bench-results/windows-footprint-$(date +%Y%m%d-%H%M%S).txt}
WINE=/usr/lib/wine/wine64
need_pkg "$WINE" wine64
need_pkg curl curl
need_pkg python3 python3

BIN=$ROOT/target/release
WINBIN=$ROOT/target/windows/x86_64-pc-windows-gnu/release
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "building release binaries (Linux, then Windows)..." >&2
  cargo build --release -p sobre-agent -p sobre-collector --bins >&2
  agent/windows/build >&2
fi
for b in "$BIN/sobre-collector" "$BIN/sobre-agent" "$WINBIN/sobre-agent.exe"; do
  [ -x "$b" ] || [ -f "$b" ] || { echo "$b is missing (SKIP_BUILD=0 builds it)" >&2; exit 1; }
done
[ -d "$ROOT/target/windows/wineprefix" ] || {
  echo "no Wine prefix yet: tests/run (or one Windows e2e test) makes target/windows/wineprefix" >&2
  exit 1
}

bench_init
D=$BENCH_TMP
PREFIX=$D/wineprefix
cp -a "$ROOT/target/windows/wineprefix" "$PREFIX"
# Wine's processes of this prefix end with it: wineserver -k at the exit.
trap 'WINEPREFIX=$PREFIX /usr/lib/wine/wineserver -k 2>/dev/null || true; bench_cleanup' EXIT
echo "machine: $(nproc) CPUs; load before: $(cut -d' ' -f1-3 /proc/loadavg); $($WINE --version)" >&2
collector_config "$D" ""
HTTP=$HTTP_PORT
MQTT=$MQTT_PORT
"$BIN/sobre-collector" --config "$D/collector.toml" >"$D/collector.log" 2>&1 </dev/null &
track $!
wait_http "http://127.0.0.1:$HTTP/health" 30

winpath() { printf 'Z:%s' "$1" | tr '/' '\\'; }
agent_toml() { # agent_toml ID SPOOL_DIR INDEX_DIR
  cat <<EOF
agent_id = "$1"
interval_ms = $((INTERVAL_S * 1000))
[transport]
kind = "mqtt"
mqtt_broker = "mqtt://127.0.0.1:$MQTT"
[spool]
dir = '$2'
[storage]
enabled = false
index_dir = '$3'
EOF
}
agent_toml bench-linux "$D/linux/spool" "$D/linux/index" >"$D/linux.toml"
mkdir -p "$D/win"
agent_toml bench-windows "$(winpath "$D/win/spool")" "$(winpath "$D/win/index")" >"$D/win.toml"
cp "$WINBIN/sobre-agent.exe" "$WINBIN/bcryptprimitives.dll" "$D/win/"

"$BIN/sobre-agent" --config "$D/linux.toml" >"$D/linux.log" 2>&1 </dev/null &
LINUX=$!
track "$LINUX"
WINEPREFIX=$PREFIX WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" \
  "$WINE" "$D/win/sobre-agent.exe" --config "$(winpath "$D/win.toml")" >"$D/win.log" 2>&1 </dev/null &
track $!

# The Linux process Wine runs the .exe in, and every other process of the
# prefix (Wine's own).
prefix_pids() {
  for e in /proc/[0-9]*/environ; do
    grep -qxzF "WINEPREFIX=$PREFIX" "$e" 2>/dev/null && { p=${e#/proc/}; echo "${p%/environ}"; }
  done
}
exe_pid() { for p in $(prefix_pids); do grep -q 'sobre-agent.exe' "/proc/$p/cmdline" 2>/dev/null && echo "$p"; done | tail -1 || true; }
wine_ticks() { # ticks of the prefix's processes but the agent's
  local sum=0 p
  for p in $(prefix_pids); do [ "$p" = "$1" ] || sum=$((sum + $(cpu_ticks "$p"))); done
  echo "$sum"
}
wine_rss() {
  local sum=0 p
  for p in $(prefix_pids); do [ "$p" = "$1" ] || sum=$((sum + $(status_kb "$p" VmRSS))); done
  echo "$sum"
}
stored() { curl -sf "http://127.0.0.1:$HTTP/api/v1/agents/$1/samples?since=0&limit=10000" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0; }

echo "waiting for both agents' first reports..." >&2
for _ in $(seq 1 600); do
  [ "$(stored bench-linux)" != 0 ] && [ "$(stored bench-windows)" != 0 ] && break
  sleep 0.1
done
[ "$(stored bench-windows)" != 0 ] || { echo "no report from the Windows agent; its log:" >&2; tail -20 "$D/win.log" >&2; exit 1; }
EXE=$(exe_pid)
[ -n "$EXE" ] || { echo "cannot find the .exe's process" >&2; exit 1; }
# Half an interval on: both snapshots fall between two reports.
sleep $((INTERVAL_S / 2))

snap() { echo "$(date +%s.%N) $(cpu_ticks "$LINUX") $(cpu_ticks "$EXE") $(wine_ticks "$EXE") $(stored bench-linux) $(stored bench-windows)"; }
read -r T0 L0 W0 O0 NL0 NW0 < <(snap)
echo "measuring for ${DURATION}s (started $(date +%T))..." >&2
sleep "$DURATION"
read -r T1 L1 W1 O1 NL1 NW1 < <(snap)
TCK=$(getconf CLK_TCK)

{
  echo "## The Windows agent under Wine beside the Linux agent, same run"
  echo
  echo "Code: $(code_state); $(nproc) CPUs; load at the end: $(cut -d' ' -f1-3 /proc/loadavg); $($WINE --version); ${DURATION} s at a ${INTERVAL_S} s interval, MQTT, storage scan off"
  echo
  python3 - "$T0" "$T1" "$TCK" "$L0" "$L1" "$W0" "$W1" "$O0" "$O1" \
    "$(status_kb "$LINUX" VmRSS)" "$(status_kb "$LINUX" VmHWM)" \
    "$(status_kb "$EXE" VmRSS)" "$(status_kb "$EXE" VmHWM)" "$(wine_rss "$EXE")" \
    "$(status_kb "$LINUX" RssAnon)" "$(status_kb "$EXE" RssAnon)" \
    "$((NL1 - NL0))" "$((NW1 - NW0))" \
    "$(stat -c %s "$BIN/sobre-agent")" "$(stat -c %s "$WINBIN/sobre-agent.exe")" <<'EOF'
import sys
a = sys.argv[1:]
t0, t1, tck = float(a[0]), float(a[1]), float(a[2])
l0, l1, w0, w1, o0, o1 = map(int, a[3:9])
lrss, lhwm, wrss, whwm, orss = (int(x) / 1024 for x in a[9:14])
lanon, wanon = (int(x) / 1024 for x in a[14:16])
nl, nw, lsize, wsize = map(int, a[16:20])
wall = t1 - t0
pct = lambda d: 100.0 * d / tck / wall
lc, wc, oc = pct(l1 - l0), pct(w1 - w0), pct(o1 - o0)
print("| | Linux agent | Windows agent (.exe under Wine) | ratio | Wine's own processes |")
print("|---|---|---|---|---|")
print(f"| RSS at the end | {lrss:.2f} MB | {wrss:.2f} MB | {wrss / lrss:.2f}x | {orss:.1f} MB |")
print(f"| of which anonymous (heap, stacks; the rest is mapped files: the binary, and Wine's DLLs for the .exe) | {lanon:.2f} MB | {wanon:.2f} MB | {wanon / lanon:.2f}x | |")
print(f"| peak RSS (VmHWM) | {lhwm:.2f} MB | {whwm:.2f} MB | {whwm / lhwm:.2f}x | |")
print(f"| CPU, % of one core | {lc:.4f} % | {wc:.4f} % | {wc / lc if lc else float('nan'):.2f}x | {oc:.4f} % |")
print(f"| reports stored in the window | {nl} | {nw} | | |")
print(f"| binary | {lsize / 1e6:.2f} MB | {wsize / 1e6:.2f} MB | {wsize / lsize:.2f}x | |")
print()
print(f"goal on real Windows (stated, not measurable here): <= 10 MB RSS, <= 0.05 % of a core at a 10 s interval;")
print(f"under Wine: {wrss:.2f} MB ({wanon:.2f} MB anonymous), {wc:.4f} % ({'within' if wrss <= 10 and wc <= 0.05 else 'outside'} it, Wine's own processes apart)")
EOF
} | tee "$OUT"
echo "report: $OUT" >&2
