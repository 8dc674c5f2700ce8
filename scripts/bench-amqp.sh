#!/usr/bin/env bash
# AMQP benchmark: the same `arctern bench-amqp` scenarios against RabbitMQ (classic and
# quorum queues) and Arctern, one broker after the other on this machine, and a table of
# the figures side by side (with Arctern / RabbitMQ ratios) written into
# docs/benchmarks.md between the `bench-amqp:begin` / `bench-amqp:end` markers (see the
# AMQP section there).
#
#   scripts/bench-amqp.sh                    # defaults below, about 5 minutes
#   MESSAGES=200000 scripts/bench-amqp.sh    # knobs are environment variables
#
# Knobs (environment):
#   BENCH_DIR        parent of the scratch directory (broker data dirs); default: the cargo
#                    target directory
#   MESSAGE_SIZE     bytes per message body (default 1024)
#   MESSAGES         messages per publish-confirm, tx-size 100 and consume run (default 100000)
#   TX1_MESSAGES     messages of the per-message transaction run (default 20000)
#   TIME_LIMIT       seconds after which a publish-confirm / tx run stops publishing and
#                    counts what it sent (default 15)
#   PUBLISHERS       publishers (connections) of the multi-publisher rows (default 4)
#   CONFIRM_WINDOW   unconfirmed messages per publisher (default 256)
#   PREFETCH         consumer prefetch (default 1000)
#   RATE, DURATION   latency scenario: msgs/s and seconds (default 5000, 10)
#   BROKERS          which to run, any of: rabbit-classic rabbit-quorum arctern arctern-tls
#                    (default the first three; arctern-tls: Arctern through its AMQP TLS
#                    listener, a throwaway CA made with openssl, lapin rows only)
#   TLS=1            add arctern-tls to BROKERS: plaintext vs TLS in one run
#   ROWS_ONLY        run only these rows (ids: confirm1 confirmN tx1 tx100 consume1
#                    consume100 consume1r tx100r latency); default all. Use with DOC= (print only).
#   DOC              markdown file to write the table into (default docs/benchmarks.md;
#                    empty: print only)
#   KEEP=1           keep the scratch directory (broker logs, every JSON result)
#   SKIP_BUILD=1     do not run cargo build; use ARCTERN_BIN (default target/release/arctern)
#
# RabbitMQ comes from Debian's `rabbitmq-server` package, installed with apt-get when
# missing (root or sudo) with a policy-rc.d that keeps the package from starting its
# service. The script runs its own node instead: node name bench-PID@localhost, AMQP and
# Erlang distribution on free loopback ports, its own epmd on a free loopback port, data,
# logs, config, enabled-plugins file (none: no management plugin) and Erlang cookie in the
# scratch directory. Arctern: `arctern serve` with a fresh data dir and free loopback ports.
#
# Loopback only. Stops only the processes it started, by PID (trap on exit).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# The exact command, with the knobs the caller set.
KNOBS="TLS BENCH_DIR MESSAGE_SIZE MESSAGES TX1_MESSAGES TIME_LIMIT PUBLISHERS CONFIRM_WINDOW PREFETCH RATE DURATION BROKERS ROWS_ONLY DOC KEEP SKIP_BUILD ARCTERN_BIN"
COMMAND=""
for k in $KNOBS; do
    if [ -n "${!k+x}" ]; then COMMAND+="$k=${!k} "; fi
done
COMMAND+="scripts/bench-amqp.sh${*:+ $*}"

MESSAGE_SIZE="${MESSAGE_SIZE:-1024}"
MESSAGES="${MESSAGES:-100000}"
TX1_MESSAGES="${TX1_MESSAGES:-20000}"
TIME_LIMIT="${TIME_LIMIT:-15}"
PUBLISHERS="${PUBLISHERS:-4}"
CONFIRM_WINDOW="${CONFIRM_WINDOW:-256}"
PREFETCH="${PREFETCH:-1000}"
RATE="${RATE:-5000}"
DURATION="${DURATION:-10}"
BROKERS="${BROKERS:-rabbit-classic rabbit-quorum arctern}"
if [ "${TLS:-0}" = 1 ]; then
    case " $BROKERS " in *" arctern-tls "*) ;; *) BROKERS="$BROKERS arctern-tls" ;; esac
fi
DOC="${DOC-docs/benchmarks.md}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BENCH_DIR="${BENCH_DIR:-$TARGET_DIR}"

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench-amqp.sh: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is needed to read the bench's JSON"
for b in $BROKERS; do
    case "$b" in
        rabbit-classic | rabbit-quorum | arctern | arctern-tls) ;;
        *) die "unknown broker '$b' in BROKERS (rabbit-classic, rabbit-quorum, arctern, arctern-tls)" ;;
    esac
done
WANT_RABBIT=0
case " $BROKERS " in *" rabbit-"*) WANT_RABBIT=1 ;; esac

# --- build (once) -------------------------------------------------------------------------
BIN="${ARCTERN_BIN:-$TARGET_DIR/release/arctern}"
if [ "${SKIP_BUILD:-0}" = 1 ]; then
    log "SKIP_BUILD=1: using $BIN as it is"
else
    log "building arctern (release)"
    cargo build --release -p arctern >&2
fi
[ -x "$BIN" ] || die "no binary at $BIN"

# --- RabbitMQ package ------------------------------------------------------------------------
RMQ_LIB=/usr/lib/rabbitmq/bin
if [ "$WANT_RABBIT" = 1 ] && [ ! -x "$RMQ_LIB/rabbitmq-server" ]; then
    log "installing rabbitmq-server (Debian package)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || die "rabbitmq-server missing and not root (install it)"
        SUDO="sudo"
    fi
    # The package's postinst starts the service through invoke-rc.d unless policy-rc.d
    # says no (exit 101); add one for the install if there is none.
    POLICY_ADDED=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        POLICY_ADDED=1
    fi
    $SUDO apt-get update >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y rabbitmq-server >&2 || {
        [ "$POLICY_ADDED" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
        die "apt-get install rabbitmq-server failed"
    }
    [ "$POLICY_ADDED" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
    # On a machine with systemd the unit may be enabled; make sure it is not running.
    if command -v systemctl >/dev/null && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
        log "stopping the rabbitmq-server service the package started"
        $SUDO systemctl stop rabbitmq-server || true
    fi
    [ -x "$RMQ_LIB/rabbitmq-server" ] || die "no $RMQ_LIB/rabbitmq-server after the install"
fi

mkdir -p "$BENCH_DIR"
WORK="$(mktemp -d "$BENCH_DIR/arctern-bench-amqp.XXXXXX")"
ARCTERN_PID=""
RMQ_PID=""
RMQ_BEAM=""
EPMD_PID=""

# stop_pid PID NAME SECONDS: SIGTERM, then SIGKILL after SECONDS
stop_pid() {
    local pid="$1" name="$2" secs="$3" i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) ignored SIGTERM for $secs s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

stop_arctern() {
    stop_pid "$ARCTERN_PID" "arctern" 10
    ARCTERN_PID=""
}

stop_rabbit() {
    # The wrapper script traps SIGTERM and stops the Erlang VM (its child) before exiting.
    stop_pid "$RMQ_PID" "rabbitmq-server" 30
    if [ -n "$RMQ_BEAM" ] && kill -0 "$RMQ_BEAM" 2>/dev/null; then
        stop_pid "$RMQ_BEAM" "rabbitmq beam" 10
    fi
    stop_pid "$EPMD_PID" "epmd" 5
    RMQ_PID=""
    RMQ_BEAM=""
    EPMD_PID=""
}

cleanup() {
    stop_arctern
    stop_rabbit
    if [ "${KEEP:-0}" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_ports N: N distinct free loopback ports, space-separated
free_ports() {
    local n="$1" out=() p
    while [ "${#out[@]}" -lt "$n" ]; do
        p=$((20000 + RANDOM % 40000))
        port_free "$p" || continue
        case " ${out[*]-} " in *" $p "*) continue ;; esac
        out+=("$p")
    done
    echo "${out[*]}"
}

# wait_port PORT PID SECONDS: until PORT accepts a connection (1) or PID exits / time is up (0)
wait_port() {
    local port="$1" pid="$2" secs="$3" i
    for i in $(seq 1 $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || return 1
        port_free "$port" || return 0
        sleep 0.1
    done
    return 1
}

FS="$(df -PT "$WORK" | awk 'NR==2 {print $1" ("$2") mounted on "$7}')"
DISK_DEV="$(df -P "$WORK" | awk 'NR==2 {print $1}')"
MEM_GIB="$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)"
CPU_MODEL="$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
MACHINE="$(nproc) CPUs (${CPU_MODEL:-unknown}), ${MEM_GIB} GiB RAM, $FS"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
log "scratch directory $WORK on $FS; load average $LOAD_START"

# --- RabbitMQ node -----------------------------------------------------------------------------
RMQ_PORT=""
start_rabbit() {
    local attempt ports dist epmd_port d="$WORK/rabbitmq"
    for attempt in 1 2 3; do
        read -r RMQ_PORT dist epmd_port <<<"$(free_ports 3)"
        rm -rf "$d"
        mkdir -p "$d/mnesia" "$d/log" "$d/home"
        echo '[].' >"$d/enabled_plugins"
        : >"$d/rabbitmq-env.conf"
        cat >"$d/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$RMQ_PORT
loopback_users.guest = true
EOF
        # Our own epmd, loopback only, on a free port (not the shared 4369); in the
        # foreground so that its PID is ours to stop.
        epmd -address 127.0.0.1 -port "$epmd_port" >"$d/epmd.log" 2>&1 &
        EPMD_PID=$!
        wait_port "$epmd_port" "$EPMD_PID" 10 || { stop_rabbit; continue; }
        env HOME="$d/home" \
            ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT="$epmd_port" \
            RABBITMQ_NODENAME="bench-$$@localhost" \
            RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$RMQ_PORT" \
            RABBITMQ_DIST_PORT="$dist" \
            RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" \
            RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
            RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
            RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf" \
            RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
            RABBITMQ_PLUGINS_EXPAND_DIR="$d/plugins-expand" \
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
            "$RMQ_LIB/rabbitmq-server" >"$d/stdout.log" 2>&1 &
        RMQ_PID=$!
        # RabbitMQ opens its AMQP listener last, once booted.
        if wait_port "$RMQ_PORT" "$RMQ_PID" 120; then
            RMQ_BEAM="$(pgrep -P "$RMQ_PID" | head -n1 || true)"
            return 0
        fi
        log "RabbitMQ did not come up on port $RMQ_PORT (attempt $attempt); log tail:"
        tail -n 20 "$d/stdout.log" >&2 || true
        stop_rabbit
    done
    die "could not start RabbitMQ"
}

# --- Arctern ----------------------------------------------------------------------------------
ARCTERN_AMQP=""
ARCTERN_AMQPS=""
# make_tls: a CA and a server certificate for 127.0.0.1 in $WORK/tls, and a config for
# the AMQP TLS listener on port $1 (RabbitMQ's keys)
make_tls() {
    command -v openssl >/dev/null || die "arctern-tls needs the openssl CLI"
    mkdir -p "$WORK/tls"
    (
        cd "$WORK/tls"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
            -out ca.pem -days 2 -subj "/CN=bench CA" -addext basicConstraints=critical,CA:TRUE
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
            -out server.csr -subj "/CN=localhost"
        printf 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 1 -days 2 \
            -out server.pem -extfile server.ext
    ) >/dev/null 2>&1 || die "making the TLS certificates failed"
    printf '"listeners.ssl.default" = %s\n"ssl_options.certfile" = "%s"\n"ssl_options.keyfile" = "%s"\n' \
        "$1" "$WORK/tls/server.pem" "$WORK/tls/server.key" >"$WORK/tls/arctern.toml"
}

# start_arctern [tls]
start_arctern() {
    local attempt kafka extra=()
    for attempt in 1 2 3; do
        read -r kafka ARCTERN_AMQP ARCTERN_AMQPS <<<"$(free_ports 3)"
        if [ "${1:-}" = tls ]; then
            make_tls "$ARCTERN_AMQPS"
            extra=(--config "$WORK/tls/arctern.toml")
        fi
        rm -rf "$WORK/arctern"
        mkdir -p "$WORK/arctern"
        "$BIN" serve --data-dir "$WORK/arctern/data" --kafka-listen "127.0.0.1:$kafka" \
            --amqp-listen "127.0.0.1:$ARCTERN_AMQP" "${extra[@]}" >"$WORK/arctern/broker.log" 2>&1 &
        ARCTERN_PID=$!
        if wait_port "$ARCTERN_AMQP" "$ARCTERN_PID" 30; then
            return 0
        fi
        log "arctern did not come up on port $ARCTERN_AMQP (attempt $attempt); log tail:"
        tail -n 20 "$WORK/arctern/broker.log" >&2 || true
        stop_arctern
    done
    die "could not start arctern"
}

# --- scenarios --------------------------------------------------------------------------------
# Rows: id and bench-amqp arguments. Every broker runs every row.
ROWS=(
    "confirm1|--scenario publish-confirm --publishers 1 --messages $MESSAGES --time-limit $TIME_LIMIT"
    "confirmN|--scenario publish-confirm --publishers $PUBLISHERS --messages $MESSAGES --time-limit $TIME_LIMIT"
    "tx1|--scenario tx --tx-size 1 --publishers 1 --messages $TX1_MESSAGES --time-limit $TIME_LIMIT"
    "tx100|--scenario tx --tx-size 100 --publishers 1 --messages $MESSAGES --time-limit $TIME_LIMIT"
    "consume1|--scenario consume --ack-every 1 --publishers $PUBLISHERS --messages $MESSAGES"
    "consume100|--scenario consume --ack-every 100 --publishers $PUBLISHERS --messages $MESSAGES"
    "consume1r|--scenario consume --ack-every 1 --client amqprs --publishers $PUBLISHERS --messages $MESSAGES"
    "tx100r|--scenario tx --tx-size 100 --client amqprs --publishers 1 --messages $MESSAGES --time-limit $TIME_LIMIT"
    "latency|--scenario latency --rate $RATE --duration $DURATION"
)

# run_rows BROKER URI QUEUE_TYPE [EXTRA bench-amqp ARGS]
run_rows() {
    local broker="$1" uri="$2" qtype="$3" extra="${4:-}" row id rest
    for row in "${ROWS[@]}"; do
        id="${row%%|*}"
        rest="${row#*|}"
        if [ -n "${ROWS_ONLY:-}" ]; then
            case " $ROWS_ONLY " in *" $id "*) ;; *) continue ;; esac
        fi
        # The amqprs rows have no TLS (the bench builds amqprs without it).
        if [ -n "$extra" ]; then
            case "$rest" in *"--client amqprs"*) continue ;; esac
        fi
        rest="$rest $extra"
        # Each row starts with no dirty pages left by the one before (or by the other
        # broker's run): their writeback would land in this row's fsyncs.
        sync
        log "$broker: $id ($rest)"
        # shellcheck disable=SC2086
        if ! RUST_LOG="${RUST_LOG:-warn,lapin=off}" timeout 300 "$BIN" bench-amqp --uri "$uri" \
            --queue-type "$qtype" --message-size "$MESSAGE_SIZE" \
            --confirm-window "$CONFIRM_WINDOW" --prefetch "$PREFETCH" --json $rest \
            >"$WORK/$broker-$id.json" 2>"$WORK/$broker-$id.err"; then
            cat "$WORK/$broker-$id.err" >&2
            die "bench-amqp $id against $broker failed (KEEP=1 keeps the logs in $WORK)"
        fi
        cat "$WORK/$broker-$id.err" >&2
    done
}

RMQ_VERSION="n/a"
ERLANG_VERSION="n/a"
if [ "$WANT_RABBIT" = 1 ]; then
    RMQ_VERSION="$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo unknown)"
    ERLANG_VERSION="OTP $(cat /usr/lib/erlang/releases/*/OTP_VERSION 2>/dev/null | head -n1 || echo unknown)"
    log "starting RabbitMQ $RMQ_VERSION ($ERLANG_VERSION)"
    start_rabbit
    log "RabbitMQ pid $RMQ_PID (beam $RMQ_BEAM) on 127.0.0.1:$RMQ_PORT, data in $WORK/rabbitmq"
    RMQ_URI="amqp://guest:guest@127.0.0.1:$RMQ_PORT/%2f"
    case " $BROKERS " in *" rabbit-classic "*) run_rows rabbit-classic "$RMQ_URI" classic ;; esac
    case " $BROKERS " in *" rabbit-quorum "*) run_rows rabbit-quorum "$RMQ_URI" quorum ;; esac
    stop_rabbit
fi

case " $BROKERS " in
    *" arctern "*)
        log "starting arctern"
        start_arctern
        log "arctern pid $ARCTERN_PID, AMQP on 127.0.0.1:$ARCTERN_AMQP, data in $WORK/arctern/data"
        # Arctern gives classic and quorum queues the same (replicated log) durability.
        run_rows arctern "amqp://guest:guest@127.0.0.1:$ARCTERN_AMQP/%2f" quorum
        stop_arctern
        ;;
esac
case " $BROKERS " in
    *" arctern-tls "*)
        log "starting arctern with an AMQP TLS listener"
        start_arctern tls
        log "arctern pid $ARCTERN_PID, AMQP TLS on 127.0.0.1:$ARCTERN_AMQPS, data in $WORK/arctern/data"
        run_rows arctern-tls "amqps://guest:guest@127.0.0.1:$ARCTERN_AMQPS/%2f" quorum \
            "--tls-ca $WORK/tls/ca.pem"
        stop_arctern
        ;;
esac

# --- report --------------------------------------------------------------------------------
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
ARCTERN_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
python3 - "$WORK" "$BROKERS" "$DOC" "$COMMAND" "$MACHINE" "$DISK_DEV" "$RMQ_VERSION" \
    "$ERLANG_VERSION" "$ARCTERN_COMMIT" "$LOAD_START" "$LOAD_END" "$MESSAGE_SIZE" \
    "$PUBLISHERS" "$CONFIRM_WINDOW" "$PREFETCH" "$RATE" "$DURATION" <<'EOF'
import datetime, json, os, re, sys
(work, brokers, doc, command, machine, disk, rmq, erl, commit, load0, load1, size, pubs,
 window, prefetch, rate, duration) = sys.argv[1:]
brokers = brokers.split()
names = {"rabbit-classic": "RabbitMQ classic", "rabbit-quorum": "RabbitMQ quorum",
         "arctern": "Arctern", "arctern-tls": "Arctern TLS"}

def load(b, row):
    try:
        return json.load(open(f"{work}/{b}-{row}.json"))
    except (OSError, ValueError):
        return None

def get(b, row, path):
    d = load(b, row)
    for k in path:
        if d is None:
            return None
        d = d.get(k)
    return d

# (label, row, json path, format, higher is better)
metrics = [
    (f"publish-confirm, 1 publisher, window {window}: msg/s", "confirm1", ["msgs_per_sec"], "{:,.0f}", True),
    ("  confirm latency p50 / p99 / max (ms)", "confirm1", ["confirm_latency_ms"], "lat3", False),
    (f"publish-confirm, {pubs} publishers, window {window} each: msg/s", "confirmN", ["msgs_per_sec"], "{:,.0f}", True),
    ("  MB/s", "confirmN", ["mb_per_sec"], "{:.1f}", True),
    ("  confirm latency p50 / p99 / max (ms)", "confirmN", ["confirm_latency_ms"], "lat3", False),
    ("tx, 1 message per commit: msg/s", "tx1", ["msgs_per_sec"], "{:,.0f}", True),
    ("  commit latency p50 / p99 (ms)", "tx1", ["commit_latency_ms"], "lat2", False),
    ("tx, 100 messages per commit: msg/s", "tx100", ["msgs_per_sec"], "{:,.0f}", True),
    ("  commit latency p50 / p99 (ms)", "tx100", ["commit_latency_ms"], "lat2", False),
    ("tx, 100 messages per commit, amqprs publisher: msg/s", "tx100r", ["msgs_per_sec"], "{:,.0f}", True),
    ("  commit latency p50 / p99 (ms)", "tx100r", ["commit_latency_ms"], "lat2", False),
    (f"consume, prefetch {prefetch}, ack each: msg/s", "consume1", ["msgs_per_sec"], "{:,.0f}", True),
    (f"consume, prefetch {prefetch}, multiple ack every 100: msg/s", "consume100", ["msgs_per_sec"], "{:,.0f}", True),
    (f"consume, prefetch {prefetch}, ack each, amqprs consumer: msg/s", "consume1r", ["msgs_per_sec"], "{:,.0f}", True),
    (f"latency at {rate} msg/s: confirm p50 / p99 / p99.9 (ms)", "latency", ["confirm_latency_ms"], "lat3c", False),
    ("  end-to-end p50 / p99 (ms)", "latency", ["e2e_latency_ms"], "lat2", False),
    ("  achieved publish rate (msg/s)", "latency", ["msgs_per_sec"], "{:,.0f}", True),
]

def fmt(v, f):
    if v is None:
        return "—"
    if f == "lat3":
        return f"{v['p50']:.2f} / {v['p99']:.2f} / {v['max']:.2f}"
    if f == "lat3c":
        return f"{v['p50']:.2f} / {v['p99']:.2f} / {v['p999']:.2f}"
    if f == "lat2":
        return f"{v['p50']:.2f} / {v['p99']:.2f}"
    return f.format(v)

def key(v, f):
    """The figure a ratio is taken of: the number, or p99 for latencies."""
    if v is None:
        return None
    return v["p99"] if f.startswith("lat") else v

def ratio(a, b, f, higher):
    a, b = key(a, f), key(b, f)
    if a is None or b is None or b == 0:
        return "—"
    r = a / b
    return f"{r:.2f}x" + ("" if higher else " (p99)")

rabbits = [b for b in ("rabbit-classic", "rabbit-quorum") if b in brokers]
cols = [names[b] for b in brokers]
ratio_cols = [f"Arctern / {names[r]}" for r in rabbits] if "arctern" in brokers else []
lines = ["| scenario | " + " | ".join(cols + ratio_cols) + " |",
         "|---" * (1 + len(cols) + len(ratio_cols)) + "|"]
for label, row, path, f, higher in metrics:
    vals = {b: get(b, row, path) for b in brokers}
    cells = [fmt(vals[b], f) for b in brokers]
    if ratio_cols:
        cells += [ratio(vals["arctern"], vals[r], f, higher) for r in rabbits]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
for b in brokers:
    for row in ("confirm1", "confirmN", "latency"):
        n = get(b, row, ["nacks"])
        if n:
            lines.append(f"\nWARNING: {names[b]} nacked {n} messages in {row}.")
    d = load(b, "latency")
    if d and d["delivered"] != d["messages"]:
        lines.append(f"\nWARNING: {names[b]} latency: {d['delivered']} of {d['messages']} delivered.")
table = "\n".join(lines)

# Targets (issue): Arctern vs RabbitMQ quorum queues.
def tgt():
    out = []
    if "arctern" not in brokers or "rabbit-quorum" not in brokers:
        return out
    a, q = get("arctern", "confirmN", ["msgs_per_sec"]), get("rabbit-quorum", "confirmN", ["msgs_per_sec"])
    a1, q1 = get("arctern", "confirm1", ["msgs_per_sec"]), get("rabbit-quorum", "confirm1", ["msgs_per_sec"])
    if a and q and a1 and q1:
        r, r1 = a / q, a1 / q1
        out.append(f"| publish rate ≥ 4x RabbitMQ quorum (confirms, 1 KiB, one queue) | "
                   f"{r:.2f}x with {pubs} publishers, {r1:.2f}x with 1 | "
                   f"{'MET' if min(r, r1) >= 4 else 'NOT MET'} |")
    t = {b: get(b, "tx1", ["msgs_per_sec"]) for b in rabbits + ["arctern"]}
    if all(t.values()):
        rs = [t["arctern"] / t[r] for r in rabbits]
        out.append(f"| per-message transactions ≥ 2x RabbitMQ | " +
                   ", ".join(f"{x:.2f}x {names[r].split()[1]}" for x, r in zip(rs, rabbits)) +
                   f" | {'MET' if min(rs) >= 2 else 'NOT MET'} |")
    for row, label in (("consume1", "lapin"), ("consume1r", "amqprs")):
        a, q = get("arctern", row, ["msgs_per_sec"]), get("rabbit-quorum", row, ["msgs_per_sec"])
        if a and q:
            out.append(f"| consume, ack each ≥ 1.5x RabbitMQ quorum ({label} consumer) | {a / q:.2f}x | "
                       f"{'MET' if a / q >= 1.5 else 'NOT MET'} |")
    for row, label in (("tx100", "lapin"), ("tx100r", "amqprs")):
        a, q = get("arctern", row, ["msgs_per_sec"]), get("rabbit-quorum", row, ["msgs_per_sec"])
        if a and q:
            out.append(f"| tx of 100 messages ≥ 1.5x RabbitMQ quorum ({label} publisher) | {a / q:.2f}x | "
                       f"{'MET' if a / q >= 1.5 else 'NOT MET'} |")
    p = {b: get(b, "latency", ["confirm_latency_ms"]) for b in rabbits + ["arctern"]}
    if all(p.values()):
        out.append(f"| confirm p99 at {rate} msg/s below RabbitMQ's | Arctern {p['arctern']['p99']:.2f} ms; " +
                   ", ".join(f"{names[r].split()[1]} {p[r]['p99']:.2f} ms" for r in rabbits) +
                   f" | {'MET' if all(p['arctern']['p99'] < p[r]['p99'] for r in rabbits) else 'NOT MET'} |")
    if out:
        out = ["| target | measured | |", "|---|---|---|"] + out
    return out

targets = "\n".join(tgt())
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
section = f"""<!-- bench-amqp:begin (written by scripts/bench-amqp.sh; replaced on every run) -->
Run: {date}, `{command}` (Arctern commit {commit}).

- Machine: {machine}.
- Load average: {load0} at the start, {load1} at the end.
- RabbitMQ {rmq}, Erlang/{erl}; Arctern default configuration (flush policy `always`).
- {size}-byte persistent messages (delivery_mode 2), one durable queue per run through the
  default exchange, confirm window {window} per publisher, prefetch {prefetch}; the latency
  row publishes at {rate} msg/s for {duration} s. Every row starts after a `sync`. Ratios:
  for msg/s, Arctern ÷ RabbitMQ (higher is better); for latencies, Arctern's p99 ÷
  RabbitMQ's (lower is better).

{table}

{targets}
<!-- bench-amqp:end -->"""
print()
print(section)
if doc:
    text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
    pat = re.compile(r"<!-- bench-amqp:begin.*?<!-- bench-amqp:end -->", re.S)
    if pat.search(text):
        text = pat.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n## AMQP: Arctern against RabbitMQ\n\n" + section + "\n"
    open(doc, "w").write(text)
    print(f"\nwritten into {doc}", file=sys.stderr)
EOF
