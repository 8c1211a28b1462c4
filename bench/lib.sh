# Helpers shared by the bench/*.sh scripts (sourced, not run).
# Every process a script starts is recorded with `track PID`, and the EXIT
# trap set by `bench_init` stops exactly those, by id.

BENCH_PIDS=()

# Stops what this script started, politely first.
bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 30); do
    local alive=0
    for pid in "${BENCH_PIDS[@]:-}"; do
      [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
    done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  for pid in "${BENCH_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -n "${BENCH_TMP:-}" ] && [ -d "$BENCH_TMP" ]; then
    if [ "${KEEP_TMP:-0}" = 1 ]; then
      echo "kept $BENCH_TMP (KEEP_TMP=1)" >&2
    else
      rm -rf "$BENCH_TMP"
    fi
  fi
}

track() { BENCH_PIDS+=("$1"); }

# Stops one process: SIGTERM, then SIGKILL after $2 seconds (default 15).
stop_pid() {
  local pid=$1 grace=${2:-15}
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 $((grace * 10))); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  echo "warning: pid $pid did not stop within ${grace}s after SIGTERM; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

need_pkg() { # need_pkg COMMAND_PATH DEBIAN_PACKAGE
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "$1" ]; then
    echo "installing $2 (needed for $1)" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$2" >/dev/null
  fi
}

# A temp dir on a real disk: disk-write figures on tmpfs would mean nothing.
bench_init() {
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  local base=${TMPDIR:-/tmp}
  if [ "$(stat -f -c %T "$base")" = tmpfs ]; then
    base="$ROOT/target/bench-tmp"
    mkdir -p "$base"
  fi
  BENCH_TMP=$(mktemp -d "$base/sobre-bench.XXXXXX")
  echo "work dir: $BENCH_TMP ($(stat -f -c %T "$BENCH_TMP"), $(df -h --output=source,avail "$BENCH_TMP" | tail -1 | tr -s ' '))" >&2
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # wait_port PORT SECONDS
  local i
  for i in $(seq 1 $(( ${2:-10} * 10 ))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1 after ${2:-10}s" >&2
  return 1
}

wait_http() { # wait_http URL SECONDS
  local i
  for i in $(seq 1 $(( ${2:-30} * 10 ))); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "$1 did not answer within ${2:-30}s" >&2
  return 1
}

# /proc readings. kB for memory; clock ticks (USER_HZ) for CPU.
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
io_field() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/io" 2>/dev/null || echo 0; }
# utime + stime; the comm field may hold spaces, so count from after ')'.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0; }
# cutime + cstime: the CPU of the children it waited for (the agent's scan
# processes).
child_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $14 + $15 }' || echo 0; }

# CPU time of a process in ms, to the nanosecond: the sum over its live
# threads of the scheduler's run time (ticks of 10 ms are too coarse for a
# start-up of 40 ms). Threads that already ended are not counted.
cpu_ms() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s / 1e6 }'; }

# A collector config in DIR/collector.toml, its data in DIR/data, every
# listener on a free loopback port, agents without enrolment (the load
# generator's simulated agents do not enrol: SECURITY.md), then EXTRA
# (TOML sections). Sets HTTP_PORT, GRPC_PORT and MQTT_PORT.
collector_config() { # collector_config DIR EXTRA
  HTTP_PORT=$(free_port)
  GRPC_PORT=$(free_port)
  MQTT_PORT=$(free_port)
  cat >"$1/collector.toml" <<EOF
data_dir = "$1/data"
[http]
listen = "127.0.0.1:$HTTP_PORT"
[mqtt]
listen = "127.0.0.1:$MQTT_PORT"
[grpc]
listen = "127.0.0.1:$GRPC_PORT"
[security]
require_enrolment = false
$2
EOF
}

metric() { # metric HTTP_PORT NAME
  curl -sf "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { print $2; found=1 } END { if (!found) print 0 }'
}

# Mosquitto as the tests run it: anonymous on loopback, no persistence,
# a deep queue for a slow subscriber; otherwise Debian's defaults
# (max_inflight_messages 20 per client).
start_mosquitto() { # start_mosquitto DIR PORT -> sets MOSQ_PID
  local dir=$1 port=$2 exe=/usr/sbin/mosquitto
  [ -x "$exe" ] || exe=$(command -v mosquitto)
  mkdir -p "$dir"
  cat >"$dir/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
log_dest stdout
log_type error
log_type warning
${MOSQ_EXTRA_CONF:-}
EOF
  "$exe" -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 </dev/null &
  MOSQ_PID=$!
  track "$MOSQ_PID"
  wait_port "$port" 10
}

# Which code was measured: the commit, and what differs from it.
code_state() {
  # BENCH_CODE_STATE: say it yourself (e.g. when measuring an export).
  if [ -n "${BENCH_CODE_STATE:-}" ]; then echo "$BENCH_CODE_STATE"; return; fi
  local head dirty
  head=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | awk '{print $2}' | tr '\n' ' ')
  echo "commit $head${dirty:+ + uncommitted changes in: $dirty}"
}

# release_bins NAME... -> sets BIN; builds the workspace's release binaries
# unless SKIP_BUILD=1, then checks the named ones exist.
release_bins() {
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "building release binaries..." >&2
    cargo build --release --workspace --bins >&2
  fi
  local b
  for b in "$@"; do
    [ -x "$BIN/$b" ] || { echo "$BIN/$b is missing: cargo build --release --workspace --bins" >&2; exit 1; }
  done
}
