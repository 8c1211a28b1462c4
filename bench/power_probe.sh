#!/usr/bin/env bash
# What the power probe costs per sample, on this machine (no RAPL: the
# model) and with a RAPL tree of two packages + DRAM + psys standing in
# for /sys/class/powercap (regular files: the same read syscalls).
# Usage: bench/power_probe.sh [SAMPLES]   (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-20000}"
cargo build --release -q -p sobre-agent
agent=target/release/sobre-agent
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== this machine ($(nproc) cores), root=/"
"$agent" cost --samples "$n"

root="$tmp/root"
mkdir -p "$root/sys/class"
for d in proc etc run dev; do ln -s "/$d" "$root/$d"; done
for d in block dmi power_supply drm; do [ -e "/sys/class/$d" ] && ln -s "/sys/class/$d" "$root/sys/class/$d"; done
ln -s /sys/block "$root/sys/block"
zone() { # dir name energy max
  mkdir -p "$root/sys/class/powercap/$1"
  echo "$2" > "$root/sys/class/powercap/$1/name"
  echo "$3" > "$root/sys/class/powercap/$1/energy_uj"
  echo "$4" > "$root/sys/class/powercap/$1/max_energy_range_uj"
}
zone intel-rapl:0 package-0 1000000 262143328850
zone intel-rapl:0:0 dram 200000 65712999613
zone intel-rapl:1 package-1 2000000 262143328850
zone intel-rapl:1:0 dram 300000 65712999613
zone intel-rapl:2 psys 5000000 262143328850
printf 'root = "%s"\n' "$root" > "$tmp/agent.toml"
echo
echo "== RAPL tree (2 packages, 2 dram, psys) under $root"
"$agent" --config "$tmp/agent.toml" cost --samples "$n"
