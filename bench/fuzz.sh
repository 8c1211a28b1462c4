#!/usr/bin/env bash
# Fuzzing (issue 8): runs each cargo-fuzz target of fuzz/ for a fixed time
# and fails if any crashed.
#
#   bench/fuzz.sh                          # every target, 60 s each
#   FUZZ_SECONDS=20 bench/fuzz.sh          # shorter
#   bench/fuzz.sh line_protocol            # some targets only
#
# Targets (fuzz/fuzz_targets/): envelope_decode (uplink bytes → checked
# envelope), config_parse (TOML → agent and collector config, validated),
# line_protocol (store rows → InfluxDB line protocol, parsed back),
# http_query (API query strings → a bounded footprint window),
# spool_recover (damaged or arbitrary agent spool files → recovery: opens,
# never reuses a seq, keeps intact records, counts lost ones).
# Needs the nightly toolchain (rustup toolchain install nightly); installs
# cargo-fuzz (crates.io) if it is missing. Targets run one after the other
# (one core). Seeds are fuzz/corpus/<target>/ (committed) and, for
# config_parse, the current example config files; what the fuzzer learns
# is kept in target/fuzz-corpus/<target>/ (not committed) for the next run.
# A crash leaves its input in fuzz/artifacts/<target>/; replay it with
#   cd fuzz && cargo +nightly fuzz run -O -a <target> artifacts/<target>/<file>
# and make it a regression test next to the code that crashed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
ALL=(envelope_decode config_parse line_protocol http_query spool_recover)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL[@]}"); fi
WORK=$ROOT/target/fuzz-corpus
# -O: release, as fast as the sink runs; -a: debug assertions and
# overflow checks, so arithmetic an agent can overflow is found too.
FLAGS=(+nightly fuzz run -O -a)

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "error: cargo-fuzz needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
  cargo install cargo-fuzz --locked
fi

cd "$ROOT/fuzz"
echo "building fuzz targets (nightly, release, debug assertions)" >&2
cargo +nightly fuzz build -O -a >&2

# Seeds: envelopes encoded as an agent does (regenerated, so they follow
# the proto) and the example config files as they are now.
./target/x86_64-unknown-linux-gnu/release/make_seeds
mkdir -p "$WORK" corpus/config_parse
cp "$ROOT/collector/sobre-collector.example.toml" "$ROOT/agent/sobre-agent.example.toml" \
  corpus/config_parse/

failed=()
printf '%-16s %8s %12s %10s %8s %8s %s\n' target seconds executions "execs/s" cov features result
for t in "${TARGETS[@]}"; do
  mkdir -p "$WORK/$t" "artifacts/$t"
  log=$WORK/$t.log
  before=$(ls "artifacts/$t" | wc -l)
  status=0
  # One fuzzing process at a time; new inputs go to $WORK/$t, seeds are
  # only read.
  nice -n 10 cargo "${FLAGS[@]}" "$t" "$WORK/$t" "corpus/$t" -- \
    -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  after=$(ls "artifacts/$t" | wc -l)
  result=ok
  if [ "$status" != 0 ] || [ "$after" -gt "$before" ]; then
    result="CRASH (exit $status, log $log)"
    failed+=("$t")
  fi
  printf '%-16s %8s %12s %10s %8s %8s %s\n' "$t" "$FUZZ_SECONDS" "${execs:-?}" "${rate:-?}" \
    "${cov:-?}" "${ft:-?}" "$result"
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo >&2
  for t in "${failed[@]}"; do
    echo "crash in $t; inputs:" >&2
    ls -1t "$ROOT/fuzz/artifacts/$t" | sed "s|^|  fuzz/artifacts/$t/|" >&2
    grep -m1 -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$WORK/$t.log" | sed 's/^/  /' >&2 || true
  done
  exit 1
fi
