#!/usr/bin/env bash
# Storage scan benchmark: sobre-agent scan beside fclones 0.35 on the same
# 200,000-file tree (bench/gen_tree.py, seed 42, 3.5 GB), same run.
#
#   bench/scan.sh                 # everything below
#   RUNS=5 bench/scan.sh          # more repetitions (median is reported)
#   FILES=20000 bench/scan.sh     # a smaller tree (its own directory)
#   PAIRS=11 bench/scan.sh        # more full-scan + rescan pairs (default 7)
#
# Measures: full scan with a warm cache (sobre at its default threads and
# others; fclones default and --threads tuned), wall time and peak RSS;
# the same with a cold cache when /proc/sys/vm/drop_caches is writable
# (root); a rescan with nothing changed (goal: <= 25 % of the full scan);
# the walk alone against find (goal: within 1.5x); background mode's CPU
# use per minute against its budget.
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
mkdir -p "$WORK" "$OUT"

say() { printf '%s\n' "$*" >&2; }

[ -x /usr/bin/time ] || { say "installing time"; apt-get install -y -qq time >/dev/null; }

if [ ! -f "$TREE.manifest.json" ]; then
  say "generating $FILES files under $TREE (once)"
  rm -rf "$TREE"
  python3 "$(dirname "$0")/gen_tree.py" "$TREE" --files "$FILES" --seed 42 >/dev/null
fi

FCLONES=${FCLONES:-$(command -v fclones || true)}
if [ -z "$FCLONES" ]; then
  FCLONES=$ROOT/target/bench-fclones/bin/fclones
  if [ ! -x "$FCLONES" ]; then
    say "installing fclones 0.35.0 (once, from crates.io)"
    CARGO_TARGET_DIR=$ROOT/target/bench-fclones/build \
      cargo install fclones --version 0.35.0 --locked --root "$ROOT/target/bench-fclones" -q
  fi
fi
"$FCLONES" --version >&2

say "building sobre-agent (release)"
(cd "$ROOT" && cargo build --release -p sobre-agent -q)
SOBRE=$ROOT/target/release/sobre-agent
export SOBRE_LOG=warn

CAN_DROP=0
if [ -w /proc/sys/vm/drop_caches ] && sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
  CAN_DROP=1
fi
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# measure NAME CMD...: wall seconds and peak RSS (kB) of one run.
measure() {
  local name=$1; shift
  /usr/bin/time -f "%e %M %U %S" -o "$OUT/time" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
  awk '{ printf "%s %s %.2f\n", $1, $2, $3 + $4 }' "$OUT/time"
}

# median_of NAME MODE CMD...: RUNS runs (MODE warm|cold), prints "wall rss"
# of the median run by wall time.
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
  printf '| %-46s | %7.2f s | %6.2f s | %7.1f MB | %s |\n' "$label" "$wall" "$cpu" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$ratio"
}

IDX=$OUT/index
scan_fresh() { rm -rf "$IDX"; "$SOBRE" scan "$TREE" --index-dir "$IDX" "$@"; }

echo "## Storage scan, $FILES files ($(du -sh --apparent-size "$TREE" | cut -f1)), $(nproc) cores, median of $RUNS"
echo
echo "| run | wall | CPU (user+sys) | peak RSS | wall vs fclones' best --threads (warm; cold rows: cold) |"
echo "|---|---|---|---|---|"
# Warm the cache once.
"$SOBRE" scan "$TREE" --no-index >/dev/null 2>&1
# best LABEL=RESULT...: the fastest "wall rss" among fclones' tuned runs.
best() { printf '%s\n' "$@" | sort -n | head -1; }
export -f scan_fresh
export SOBRE TREE IDX
FC_DEF=$(median_of fclones-default warm "$FCLONES" group "$TREE")
declare -A FC
for t in 8 32 64; do FC[$t]=$(median_of fclones-hdd$t warm "$FCLONES" group --threads "hdd:$t,$t" "$TREE"); done
base=$(best "${FC[@]}" | cut -d' ' -f1)
row "fclones 0.35 default, warm" "$FC_DEF" "$base"
for t in 8 32 64; do row "fclones 0.35 --threads hdd:$t,$t, warm" "${FC[$t]}" "$base"; done
SOBRE_DEFAULT=$(median_of sobre-default warm bash -c 'scan_fresh')
row "sobre scan (default: 16 threads, index written)" "$SOBRE_DEFAULT" "$base"
for t in 2 64; do
  row "sobre scan --threads $t" "$(median_of sobre-t$t warm bash -c "scan_fresh --threads $t")" "$base"
done
full=$(cut -d' ' -f1 <<<"$SOBRE_DEFAULT")

# Check the answers agree with the manifest.
python3 - "$TREE.manifest.json" "$OUT/sobre-default.out" <<'EOF2' >&2
import json, re, sys
m = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read()
g = re.search(r"([\d,.]+ [kMG]?B) of duplicates in ([\d,]+) files \(the copies beyond the first of ([\d,]+) groups", text)
print(f"manifest: {m['expected_dup_groups']} groups, {m['expected_redundant_bytes']} redundant bytes;",
      f"sobre: {g.group(3) if g else '?'} groups, {g.group(1) if g else '?'}")
EOF2

if [ "$CAN_DROP" = 1 ] && [ "${SKIP_COLD:-0}" != 1 ]; then
  declare -A FCC
  for t in 8 32 64; do FCC[$t]=$(median_of fclones-cold-hdd$t cold "$FCLONES" group --threads "hdd:$t,$t" "$TREE"); done
  cbase=$(best "${FCC[@]}" | cut -d' ' -f1)
  row "fclones default, cold cache" "$(median_of fclones-cold cold "$FCLONES" group "$TREE")" "$cbase"
  for t in 8 32 64; do row "fclones --threads hdd:$t,$t, cold cache" "${FCC[$t]}" "$cbase"; done
  row "sobre scan (default: 16 threads), cold cache" "$(median_of sobre-cold cold bash -c 'scan_fresh')" "$cbase"
  for t in 2 64; do
    row "sobre scan --threads $t, cold cache" "$(median_of sobre-cold-t$t cold bash -c "scan_fresh --threads $t")" "$cbase"
  done
else
  echo "| cold cache: not measured (SKIP_COLD=1, or /proc/sys/vm/drop_caches not writable) | | | | |"
fi

# Rescan, nothing changed, against a full scan: run in pairs, one right
# after the other, so that load from elsewhere hits both alike (PAIRS of
# them: they are short, and a busy machine scatters single pairs).
PAIRS=${PAIRS:-7}
fulls=(); rescans=(); ratios=(); cpu_ratios=()
for _ in $(seq 1 "$PAIRS"); do
  f=$(measure sobre-full bash -c 'scan_fresh')
  r=$(measure sobre-rescan "$SOBRE" scan "$TREE" --index-dir "$IDX")
  fulls+=("$f"); rescans+=("$r")
  ratios+=("$(awk -v a="${r%% *}" -v b="${f%% *}" 'BEGIN { printf "%.1f", 100 * a / b }')")
  cpu_ratios+=("$(awk -v a="${r##* }" -v b="${f##* }" 'BEGIN { printf "%.1f", 100 * a / b }')")
done
med() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
row "sobre full scan (paired with the rescan below)" "$(med "${fulls[@]}")" "$base"
row "sobre rescan, nothing changed" "$(med "${rescans[@]}")" "$base"
echo
echo "Rescan / full scan, per pair: wall ${ratios[*]} % (median $(med "${ratios[@]}") %; goal <= 25 %);"
echo "CPU ${cpu_ratios[*]} % (median $(med "${cpu_ratios[@]}") %)."
grep -h "Hashed" "$OUT/sobre-rescan.out" | head -1
"$SOBRE" scan "$TREE" --index-dir "$IDX" --json 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)["report"]
print("Rescan breakdown: index read {load_ms} ms, walk {walk_ms} ms, grouping {hash_ms} ms, index written {index_ms} ms.".format(**r))'


# Walk only against find.
echo
echo "| walk | wall | CPU (user+sys) | peak RSS | vs find -printf |"
echo "|---|---|---|---|---|"
FIND_STAT=$(median_of find-stat warm find "$TREE" -printf '%i %s %T@\n')
fbase=$(cut -d' ' -f1 <<<"$FIND_STAT")
row "find -printf '%i %s %T@' (stats every entry)" "$FIND_STAT" "$fbase"
row "find (names only, no stat)" "$(median_of find-plain warm find "$TREE")" "$fbase"
row "sobre scan --walk-only (default threads)" "$(median_of walk warm "$SOBRE" scan "$TREE" --walk-only)" "$fbase"
row "sobre scan --walk-only --threads 1" "$(median_of walk1 warm "$SOBRE" scan "$TREE" --walk-only --threads 1)" "$fbase"

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
