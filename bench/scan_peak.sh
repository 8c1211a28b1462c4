#!/usr/bin/env bash
# Peak memory of the agent's scheduled (background) scan beside fclones on
# the same tree, same run (issue 23: at most 0.5x fclones' peak RSS).
#
#   bench/scan_peak.sh              # the 200,000-file tree of bench/scan.sh
#   FILES=20000 bench/scan_peak.sh  # a smaller one
#
# The scheduled scan is what the agent runs once a day: `sobre-agent
# scan-child` fed the shipped [storage] defaults (background, threads = 16,
# budget 5 % of a core) with roots and index_dir set to the tree and a
# fresh index, then again with that index (the daily rescan). fclones 0.35
# runs `fclones group TREE` (its defaults). Peak RSS is each process's
# ru_maxrss (getrusage of the reaped child, kB), CPU its user + system
# time. fclones is taken from $FCLONES, PATH, or installed once under
# target/bench-fclones, as bench/scan.sh does.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FILES=${FILES:-200000}
TREE=$ROOT/target/bench-tree/tree-$FILES
SOBRE=${SOBRE:-$ROOT/target/release/sobre-agent}
BUDGET=${BUDGET:-5.0}

if [ ! -f "$TREE.manifest.json" ]; then
  echo "generating $FILES files under $TREE (once)" >&2
  rm -rf "$TREE"
  python3 "$ROOT/bench/gen_tree.py" "$TREE" --files "$FILES" --seed 42 >/dev/null
fi
FCLONES=${FCLONES:-$(command -v fclones || true)}
if [ -z "$FCLONES" ]; then
  FCLONES=$ROOT/target/bench-fclones/bin/fclones
  if [ ! -x "$FCLONES" ]; then
    echo "installing fclones 0.35.0 (once, from crates.io)" >&2
    CARGO_TARGET_DIR=$ROOT/target/bench-fclones/build \
      cargo install fclones --version 0.35.0 --locked --root "$ROOT/target/bench-fclones" -q
  fi
fi
[ -x "$SOBRE" ] || (cd "$ROOT" && cargo build --release -p sobre-agent -q)
WORK=$(mktemp -d "$ROOT/target/scan-peak.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "## Scheduled scan's peak RSS beside fclones, $FILES files ($(du -sh --apparent-size "$TREE" | cut -f1)), $(nproc) cores"
echo
echo "Build: $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- agent || echo ' (modified)'); load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 - "$SOBRE" "$FCLONES" "$TREE" "$WORK" "$BUDGET" <<'EOF'
import os, resource, struct, subprocess, sys, time
sobre, fclones, tree, work, budget = sys.argv[1:]

def reaped(cmd, stdin=None, feed=None):
    """Runs cmd, returns (wall s, cpu s, peak kB, stdout) of that child alone."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if feed is not None:
        p.stdin.write(feed)
        p.stdin.flush()  # kept open: closing it stops the scan
    out = p.stdout.read()
    p.wait()
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {p.returncode}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss of RUSAGE_CHILDREN is the largest child's so far: fclones
    # runs first, the agent's scans give their own peak in their answer.
    return wall, cpu, after.ru_maxrss, out

storage = f'roots = ["{tree}"]\nindex_dir = "{work}/index"\ncpu_budget_percent = {budget}\n'
feed = struct.pack("<I", len(storage)) + storage.encode()
wall, cpu, maxrss, _ = reaped([fclones, "group", tree])
fc = maxrss / 1024
rows = [("fclones 0.35 group (defaults)", wall, cpu, fc, "")]
for label in ["scheduled scan, fresh index (full)", "scheduled scan, daily rescan (index kept)"]:
    wall, cpu, _, out = reaped([sobre, "scan-child"], stdin=subprocess.PIPE, feed=feed)
    peak, file_rss = struct.unpack("<QQ", out[:16])
    rows.append((f"sobre-agent {label}", wall, cpu, peak / 2**20, f"of which {file_rss / 2**20:.1f} MB code pages"))
print("| run | wall | CPU (user+sys) | peak RSS | vs fclones' peak | |")
print("|---|---|---|---|---|---|")
for label, wall, cpu, mb, note in rows:
    print(f"| {label} | {wall:.1f} s | {cpu:.2f} s | {mb:.1f} MB | {mb / fc:.2f}x | {note} |")
worst = max(r[3] for r in rows[1:])
print(f"\ngoal: scheduled scan's peak {worst:.1f} MB <= 0.5x fclones' {fc:.1f} MB:",
      "MET" if worst <= 0.5 * fc else "MISSED")
EOF
