#!/usr/bin/env bash
# Storage scan benchmark: sobre-agent scan beside fclones 0.35 on the same
# 200,000-file tree (bench/gen_tree.py, seed 42, 3.5 GB), same run.
#
#   bench/scan.sh                 # everything below
#   RUNS=5 bench/scan.sh          # more repetitions (median is reported)
#   FILES=20000 bench/scan.sh     # a smaller tree (its own directory)
#   PAIRS=11 bench/scan.sh        # more full-scan + rescan pairs (default 7)
#   BASE=/path/sobre-agent bench/scan.sh
#                                 # another build (say, main's) alternating
#                                 # with this one in the pairs and the walk
#   SKIP_FCLONES=1 SKIP_BG=1 bench/scan.sh
#                                 # only sobre's rows, no background run
#   SKIP_COLD=1 bench/scan.sh     # no cold-cache rows
#   COLD=loop bench/scan.sh       # cold rows from a copy of the tree on a
#                                 # loop-mounted ext4 image (direct I/O),
#                                 # remounted before each run: only its
#                                 # caches are dropped, not the machine's
#
# Measures: full scan with a warm cache (sobre at its default threads and
# others; fclones default and --threads tuned), wall time and peak RSS;
# the same with a cold cache (COLD=drop, the default, drops the whole
# machine's caches through /proc/sys/vm/drop_caches when writable, i.e. as
# root: other work on the machine slows down too; COLD=loop needs root,
# losetup and mkfs.ext4); a rescan with nothing changed (goal: <= 25 % of
# the full scan); the walk alone against find (goal: within 1.5x);
# background mode's CPU use per minute against its budget.
#
# Wall times come from the clock (nanoseconds), CPU and peak RSS from
# /usr/bin/time (centiseconds, kB).
#
# Needs python3, /usr/bin/time (Debian: time), cargo. fclones is taken from
# $FCLONES, PATH, or installed once (cargo install fclones 0.35.0 --locked)
# under target/bench-fclones. The tree lives under target/bench-tree (not
# /tmp, which may be small; not in git-tracked paths).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FILES=${FILES:-200000}
RUNS=${RUNS:-3}
# Shorter than the background scan of the 200,000-file tree (~55 s), so
# that the Ctrl-C and the resume are measured too.
BG_SECONDS=${BG_SECONDS:-40}
WORK=$ROOT/target/bench-tree
TREE=$WORK/tree-$FILES
OUT=$WORK/out
COLD=${COLD:-drop}
[ "${SKIP_COLD:-0}" = 1 ] && COLD=skip
mkdir -p "$WORK" "$OUT"

say() { printf '%s\n' "$*" >&2; }

[ -x /usr/bin/time ] || { say "installing time"; apt-get install -y -qq time >/dev/null; }

if [ ! -f "$TREE.manifest.json" ]; then
  say "generating $FILES files under $TREE (once)"
  rm -rf "$TREE"
  python3 "$(dirname "$0")/gen_tree.py" "$TREE" --files "$FILES" --seed 42 >/dev/null
fi

FCLONES=${FCLONES:-$(command -v fclones || true)}
if [ "${SKIP_FCLONES:-0}" != 1 ] && [ -z "$FCLONES" ]; then
  FCLONES=$ROOT/target/bench-fclones/bin/fclones
  if [ ! -x "$FCLONES" ]; then
    say "installing fclones 0.35.0 (once, from crates.io)"
    CARGO_TARGET_DIR=$ROOT/target/bench-fclones/build \
      cargo install fclones --version 0.35.0 --locked --root "$ROOT/target/bench-fclones" -q
  fi
fi
[ "${SKIP_FCLONES:-0}" = 1 ] || "$FCLONES" --version >&2

say "building sobre-agent (release)"
(cd "$ROOT" && cargo build --release -p sobre-agent -q)
SOBRE=$ROOT/target/release/sobre-agent
BASE=${BASE:-}
export SOBRE_LOG=warn
[ -z "$BASE" ] || say "baseline: $BASE"

# Cold caches: the machine's (drop), or a loop-mounted copy's (loop).
COLD_TREE=$TREE
drop() { :; }
case $COLD in
  drop)
    if [ -w /proc/sys/vm/drop_caches ]; then
      drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
    else
      COLD=skip
    fi
    ;;
  loop)
    IMG=$WORK/cold-$FILES.img
    MNT=$WORK/cold-$FILES
    mkdir -p "$MNT"
    if ! mountpoint -q "$MNT"; then
      if [ ! -f "$IMG.ready" ]; then
        say "making $IMG (once) and a copy of the tree on it"
        rm -f "$IMG"
        truncate -s "$(($(du -s --apparent-size -BM "$TREE" | cut -f1 | tr -d M) * 3 / 2 + 1024))M" "$IMG"
        mkfs.ext4 -q -F "$IMG"
      fi
      LOOP=$(losetup --direct-io=on -f --show "$IMG")
      mount "$LOOP" "$MNT"
      if [ ! -f "$IMG.ready" ]; then
        python3 "$(dirname "$0")/gen_tree.py" "$MNT/tree" --files "$FILES" --seed 42 >/dev/null
        touch "$IMG.ready"
      fi
    fi
    LOOP=$(findmnt -n -o SOURCE "$MNT")
    cold_done() { umount "$MNT" && losetup -d "$LOOP"; }
    COLD_TREE=$MNT/tree
    drop() { sync; umount "$MNT" && mount "$LOOP" "$MNT"; }
    ;;
esac

# measure NAME CMD...: "wall rss cpu" of one run (seconds, kB, seconds).
measure() {
  local name=$1 t0 t1; shift
  t0=$(date +%s%N)
  /usr/bin/time -f "%M %U %S" -o "$OUT/time" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
  t1=$(date +%s%N)
  awk -v w=$((t1 - t0)) '{ printf "%.3f %s %.2f\n", w / 1e9, $1, $2 + $3 }' "$OUT/time"
}

# median_of NAME MODE CMD...: RUNS runs (MODE warm|cold), prints "wall rss
# cpu" of the median run by wall time.
median_of() {
  local name=$1 mode=$2; shift 2
  local rows=()
  for _ in $(seq 1 "$RUNS"); do
    [ "$mode" = cold ] && drop
    rows+=("$(measure "$name" "$@")")
  done
  printf '%s\n' "${rows[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p"
}

row() { # row LABEL "wall rss cpu" [BASE_WALL]
  local label=$1 wall rss cpu ratio=""
  read -r wall rss cpu <<<"$2"
  [ -n "${3:-}" ] && ratio=$(awk -v a="$wall" -v b="$3" 'BEGIN { printf "%.2fx", a / b }')
  printf '| %-50s | %7.3f s | %6.2f s | %7.1f MB | %s |\n' "$label" "$wall" "$cpu" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$ratio"
}
med() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }

IDX=$OUT/index
# scan_fresh BIN TREE INDEX [ARGS]: a full scan into a fresh index (a
# script, for /usr/bin/time).
scan_fresh=$OUT/scan_fresh.sh
cat >"$scan_fresh" <<'EOF3'
#!/bin/sh
rm -rf "$3"
b=$1 t=$2 i=$3
shift 3
exec "$b" scan "$t" --index-dir "$i" "$@"
EOF3
chmod +x "$scan_fresh"

echo "## Storage scan, $FILES files ($(du -sh --apparent-size "$TREE" | cut -f1)), $(nproc) cores, median of $RUNS"
echo
echo "Build: $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- agent || echo ' (modified)'); load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| run | wall | CPU (user+sys) | peak RSS | wall vs fclones' best --threads (warm; cold rows: cold) |"
echo "|---|---|---|---|---|"
# Warm the cache once.
"$SOBRE" scan "$TREE" --no-index >/dev/null 2>&1
# best RESULT...: the fastest "wall rss cpu" among fclones' tuned runs.
best() { printf '%s\n' "$@" | sort -n | head -1; }
base=""
if [ "${SKIP_FCLONES:-0}" != 1 ]; then
  FC_DEF=$(median_of fclones-default warm "$FCLONES" group "$TREE")
  declare -A FC
  for t in 8 32 64; do FC[$t]=$(median_of fclones-hdd$t warm "$FCLONES" group --threads "hdd:$t,$t" "$TREE"); done
  base=$(best "${FC[@]}" | cut -d' ' -f1)
  row "fclones 0.35 default, warm" "$FC_DEF" "$base"
  for t in 8 32 64; do row "fclones 0.35 --threads hdd:$t,$t, warm" "${FC[$t]}" "$base"; done
fi
SOBRE_DEFAULT=$(median_of sobre-default warm "$scan_fresh" "$SOBRE" "$TREE" "$IDX")
row "sobre scan (default: 16 threads, index written)" "$SOBRE_DEFAULT" "$base"
for t in 2 64; do
  row "sobre scan --threads $t" "$(median_of sobre-t$t warm "$scan_fresh" "$SOBRE" "$TREE" "$IDX" --threads $t)" "$base"
done

# Check the answers agree with the manifest.
python3 - "$TREE.manifest.json" "$OUT/sobre-default.out" <<'EOF2' >&2
import json, re, sys
m = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read()
g = re.search(r"([\d,.]+ [kMG]?B) of duplicates in ([\d,]+) files \(the copies beyond the first of ([\d,]+) groups", text)
print(f"manifest: {m['expected_dup_groups']} groups, {m['expected_redundant_bytes']} redundant bytes;",
      f"sobre: {g.group(3) if g else '?'} groups, {g.group(1) if g else '?'}")
EOF2

if [ "$COLD" != skip ]; then
  cbase=""
  if [ "${SKIP_FCLONES:-0}" != 1 ]; then
    declare -A FCC
    for t in 8 32 64; do FCC[$t]=$(median_of fclones-cold-hdd$t cold "$FCLONES" group --threads "hdd:$t,$t" "$COLD_TREE"); done
    cbase=$(best "${FCC[@]}" | cut -d' ' -f1)
    row "fclones default, cold cache" "$(median_of fclones-cold cold "$FCLONES" group "$COLD_TREE")" "$cbase"
    for t in 8 32 64; do row "fclones --threads hdd:$t,$t, cold cache" "${FCC[$t]}" "$cbase"; done
  fi
  row "sobre scan (default: 16 threads), cold cache" "$(median_of sobre-cold cold "$scan_fresh" "$SOBRE" "$COLD_TREE" "$IDX")" "$cbase"
  for t in 2 64; do
    row "sobre scan --threads $t, cold cache" "$(median_of sobre-cold-t$t cold "$scan_fresh" "$SOBRE" "$COLD_TREE" "$IDX" --threads $t)" "$cbase"
  done
  if [ -n "$BASE" ]; then
    row "baseline scan (default), cold cache" "$(median_of base-cold cold "$scan_fresh" "$BASE" "$COLD_TREE" "$IDX")" "$cbase"
  fi
  row "sobre scan --walk-only, cold cache" "$(median_of walk-cold cold "$SOBRE" scan "$COLD_TREE" --walk-only)"
  if [ -n "$BASE" ]; then
    row "baseline scan --walk-only, cold cache" "$(median_of base-walk-cold cold "$BASE" scan "$COLD_TREE" --walk-only)"
  fi
  if [ "$COLD" = loop ]; then cold_done; fi
else
  echo "| cold cache: not measured (SKIP_COLD=1, or /proc/sys/vm/drop_caches not writable) | | | | |"
fi

# Rescan, nothing changed, against a full scan: run in pairs, one right
# after the other, so that load from elsewhere hits both alike (PAIRS of
# them: they are short, and a busy machine scatters single pairs). With a
# BASE, its pairs alternate with this build's, each going first in turn.
PAIRS=${PAIRS:-7}
declare -A FULLS RESCANS RATIOS CPU_RATIOS
pair() { # pair LABEL BIN INDEX
  local f r
  f=$(measure "$1-full" "$scan_fresh" "$2" "$TREE" "$3")
  r=$(measure "$1-rescan" "$2" scan "$TREE" --index-dir "$3")
  FULLS[$1]+="$f"$'\n'; RESCANS[$1]+="$r"$'\n'
  RATIOS[$1]+="$(awk -v a="${r%% *}" -v b="${f%% *}" 'BEGIN { printf "%.1f", 100 * a / b }') "
  CPU_RATIOS[$1]+="$(awk -v a="${r##* }" -v b="${f##* }" 'BEGIN { printf "%.1f", 100 * a / b }') "
}
for i in $(seq 1 "$PAIRS"); do
  if [ -n "$BASE" ] && [ $((i % 2)) = 0 ]; then pair base "$BASE" "$IDX-base"; fi
  pair sobre "$SOBRE" "$IDX"
  if [ -n "$BASE" ] && [ $((i % 2)) = 1 ]; then pair base "$BASE" "$IDX-base"; fi
done
# med_rows "wall rss cpu" lines: the median of each column apart.
med_rows() {
  python3 -c '
import sys, statistics
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
print(" ".join(f"{statistics.median(c):g}" for c in zip(*rows)))'
}
labels=(sobre)
if [ -n "$BASE" ]; then labels+=(base); fi
for l in "${labels[@]}"; do
  name=$([ "$l" = sobre ] && echo "sobre" || echo "baseline")
  row "$name full scan (paired with the rescan below)" "$(printf '%s' "${FULLS[$l]}" | med_rows)" "$base"
  row "$name rescan, nothing changed" "$(printf '%s' "${RESCANS[$l]}" | med_rows)" "$base"
done
echo
for l in "${labels[@]}"; do
  read -ra rs <<<"${RATIOS[$l]}"; read -ra cs <<<"${CPU_RATIOS[$l]}"
  echo "$([ "$l" = sobre ] && echo "This build" || echo "Baseline"): rescan / full scan, per pair: wall ${rs[*]} % (median $(med "${rs[@]}") %; goal <= 25 %);"
  echo "CPU ${cs[*]} % (median $(med "${cs[@]}") %)."
done
grep -h "Hashed" "$OUT/sobre-rescan.out" | head -1
"$SOBRE" scan "$TREE" --index-dir "$IDX" --json 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)["report"]
print("Rescan breakdown: index read {load_ms} ms, walk {walk_ms} ms, grouping {hash_ms} ms, index checked {index_ms} ms.".format(**r))'

# Walk only against find, in rounds (each command once a round).
echo
echo "| walk | wall | CPU (user+sys) | peak RSS | vs find -printf |"
echo "|---|---|---|---|---|"
declare -A WALK
for _ in $(seq 1 "$RUNS"); do
  WALK[find-stat]+="$(measure find-stat find "$TREE" -printf '%i %s %T@\n')"$'\n'
  WALK[find-plain]+="$(measure find-plain find "$TREE")"$'\n'
  WALK[walk]+="$(measure walk "$SOBRE" scan "$TREE" --walk-only)"$'\n'
  WALK[walk1]+="$(measure walk1 "$SOBRE" scan "$TREE" --walk-only --threads 1)"$'\n'
  if [ -n "$BASE" ]; then
    WALK[base-walk]+="$(measure base-walk "$BASE" scan "$TREE" --walk-only)"$'\n'
  fi
done
# The median run by wall time of each.
wmed() { printf '%s' "${WALK[$1]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p"; }
fbase=$(wmed find-stat | cut -d' ' -f1)
row "find -printf '%i %s %T@' (stats every entry)" "$(wmed find-stat)" "$fbase"
row "find (names only, no stat)" "$(wmed find-plain)" "$fbase"
row "sobre scan --walk-only (default threads)" "$(wmed walk)" "$fbase"
row "sobre scan --walk-only --threads 1" "$(wmed walk1)" "$fbase"
if [ -n "$BASE" ]; then
  row "baseline scan --walk-only (default threads)" "$(wmed base-walk)" "$fbase"
fi

if [ "${SKIP_BG:-0}" = 1 ]; then exit 0; fi

# Background mode: CPU time per minute against the budget (5 % of one core
# by default: 3 s per minute), sampled every 10 s.
echo
rm -rf "$OUT/bg-index"
"$SOBRE" scan "$TREE" --background --index-dir "$OUT/bg-index" >"$OUT/bg.out" 2>"$OUT/bg.err" &
BG=$!
trap 'kill -TERM $BG 2>/dev/null || true' EXIT
tck=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$BG/stat" 2>/dev/null || echo 0; }
prev=$(cpu); start=$(date +%s.%N); end=$start; windows=(); finished=""
for _ in $(seq 1 $((BG_SECONDS / 10))); do
  sleep 10
  # Gone: it finished within the window before; count up to the last sample.
  kill -0 $BG 2>/dev/null || { finished=1; break; }
  now=$(cpu); end=$(date +%s.%N)
  windows+=("$(awk -v a="$now" -v b="$prev" -v t="$tck" 'BEGIN { printf "%.2f", (a - b) / t }')"); prev=$now
done
total=$prev
kill -INT $BG 2>/dev/null || true
wait $BG 2>/dev/null || true
trap - EXIT
awk -v c="$total" -v t="$tck" -v s="$start" -v e="$end" -v w="${windows[*]}" 'BEGIN {
  cpu = c / t; wall = e - s; if (wall <= 0) wall = 1e-9;
  printf "Background mode (--background, budget 5 %% of one core = 3.0 s CPU per minute):\n";
  printf "  %.2f s CPU in %.1f s wall = %.2f s per minute (%.1f %% of one core); per 10 s window: %s s\n",
    cpu, wall, cpu / wall * 60, 100 * cpu / wall, w }'
[ -n "$finished" ] && echo "  (the scan finished within the next 10 s window; counted up to the last sample)"
if grep -q "partial" "$OUT/bg.out"; then
  echo "  stopped with Ctrl-C after ${BG_SECONDS} s; it resumes from the index:"
  /usr/bin/time -f "  resumed at full speed: %e s" "$SOBRE" scan "$TREE" --index-dir "$OUT/bg-index" 2>&1 >"$OUT/bg-resume.out" | tail -1
  grep -h "Hashed" "$OUT/bg-resume.out" | sed 's/^/  /'
fi
