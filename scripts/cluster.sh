#!/usr/bin/env bash
# A local 3-node Arctern cluster for trying things out.
#
#   scripts/cluster.sh start [N..]    start all nodes (or just node N), wait for the cluster
#   scripts/cluster.sh stop [N..]     SIGTERM (controlled shutdown), SIGKILL after 30 s
#   scripts/cluster.sh kill N..       SIGKILL a node (to watch a failover)
#   scripts/cluster.sh restart [N..]  stop, then start
#   scripts/cluster.sh status         processes, then `arctern cluster status`
#   scripts/cluster.sh wipe           stop everything and delete the cluster directory
#
# Node N (1..3): Kafka on 127.0.0.1:909(1+N) (9092, 9093, 9094), AMQP on 127.0.0.1:567(1+N)
# (5672, 5673, 5674), Raft (metadata quorum) on 127.0.0.1:1909N (19091..19093), all three
# are raft voters. Everything lives under
# ./arctern-cluster/node-N (ARCTERN_CLUSTER_DIR overrides ./arctern-cluster): data/,
# arctern.toml (created on first start: default.replication.factor 3, min.insync.replicas 2;
# edit it and restart), arctern.log, arctern.pid.
# Uses target/release/arctern (ARCTERN_BIN overrides), building it with
# `cargo build --release -p arctern` if it is missing. Only processes recorded in the pid
# files (and whose command line names their data dir) are ever signalled.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${ARCTERN_CLUSTER_DIR:-$ROOT/arctern-cluster}"
BIN="${ARCTERN_BIN:-$ROOT/target/release/arctern}"
NODES=(1 2 3)
VOTERS="1@127.0.0.1:19091,2@127.0.0.1:19092,3@127.0.0.1:19093"

kafka_port() { echo $((9091 + $1)); }
amqp_port() { echo $((5671 + $1)); }
raft_port() { echo $((19090 + $1)); }
node_dir() { echo "$DIR/node-$1"; }
log() { printf '%s\n' "$*" >&2; }
die() { printf 'cluster.sh: %s\n' "$*" >&2; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid of node N if it is running (and really is that node), else nothing
node_pid() {
    local f pid
    f="$(node_dir "$1")/arctern.pid"
    [ -f "$f" ] || return 0
    pid="$(cat "$f")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(node_dir "$1")/data"; then
        echo "$pid"
    fi
}

ensure_binary() {
    if [ ! -x "$BIN" ]; then
        log "no binary at $BIN; building it (cargo build --release -p arctern)"
        (cd "$ROOT" && cargo build --release -p arctern) >&2
        [ -x "$BIN" ] || die "build did not produce $BIN"
    fi
}

start_node() {
    local n="$1" d pid kp rp
    d="$(node_dir "$n")"
    pid="$(node_pid "$n")"
    if [ -n "$pid" ]; then
        log "node $n already running (pid $pid)"
        return 0
    fi
    kp="$(kafka_port "$n")"
    rp="$(raft_port "$n")"
    port_in_use "$kp" && die "port $kp (node $n Kafka) is in use by another process"
    port_in_use "$rp" && die "port $rp (node $n Raft) is in use by another process"
    ap="$(amqp_port "$n")"
    port_in_use "$ap" && die "port $ap (node $n AMQP) is in use by another process"
    mkdir -p "$d/data"
    if [ ! -f "$d/arctern.toml" ]; then
        cat >"$d/arctern.toml" <<EOF
# Node $n of the local cluster (scripts/cluster.sh). Keys: config/arctern.example.toml.
# node.id, the voters, the listener and the data dir come from the command line.
"default.replication.factor" = 3
"min.insync.replicas" = 2
EOF
    fi
    {
        echo "=== $(date -u +%FT%TZ) start node $n"
    } >>"$d/arctern.log"
    RUST_LOG="${RUST_LOG:-info}" setsid "$BIN" serve --node-id "$n" \
        --controller-quorum-voters "$VOTERS" \
        --kafka-listen "127.0.0.1:$kp" --data-dir "$d/data" --config "$d/arctern.toml" \
        --amqp-listen "127.0.0.1:$ap" \
        >>"$d/arctern.log" 2>&1 </dev/null &
    echo $! >"$d/arctern.pid"
    log "node $n: pid $!, Kafka 127.0.0.1:$kp, Raft 127.0.0.1:$rp, log $d/arctern.log"
}

wait_node() {
    local n="$1" kp i
    kp="$(kafka_port "$n")"
    for i in $(seq 1 300); do
        if [ -z "$(node_pid "$n")" ]; then
            tail -n 20 "$(node_dir "$n")/arctern.log" >&2 || true
            die "node $n exited during startup (log above)"
        fi
        port_in_use "$kp" && return 0
        sleep 0.1
    done
    die "node $n does not listen on $kp after 30 s (log: $(node_dir "$n")/arctern.log)"
}

stop_node() {
    local n="$1" sig="${2:-TERM}" pid i
    pid="$(node_pid "$n")"
    if [ -z "$pid" ]; then
        rm -f "$(node_dir "$n")/arctern.pid"
        log "node $n not running"
        return 0
    fi
    kill -CONT "$pid" 2>/dev/null || true
    kill "-$sig" "$pid"
    for i in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "node $n (pid $pid) still running 30 s after SIG$sig; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$(node_dir "$n")/arctern.pid"
    log "node $n stopped (SIG$sig)"
}

bootstrap_all() {
    local n out=()
    for n in "${NODES[@]}"; do out+=("127.0.0.1:$(kafka_port "$n")"); done
    (IFS=,; echo "${out[*]}")
}

first_live() {
    local n
    for n in "${NODES[@]}"; do
        if [ -n "$(node_pid "$n")" ]; then
            echo "127.0.0.1:$(kafka_port "$n")"
            return 0
        fi
    done
    return 1
}

# the node numbers given (checked), or all nodes
targets() {
    if [ "$#" -eq 0 ]; then
        echo "${NODES[@]}"
    else
        echo "$@"
    fi
}
check_nodes() {
    local n
    for n in "$@"; do
        case "$n" in 1|2|3) ;; *) die "no node '$n' (nodes: ${NODES[*]})" ;; esac
    done
}

status() {
    local n pid state
    for n in "${NODES[@]}"; do
        pid="$(node_pid "$n")"
        state="down"
        [ -z "$pid" ] || state="running (pid $pid)"
        printf 'node %s  kafka 127.0.0.1:%s  amqp 127.0.0.1:%s  raft 127.0.0.1:%s  %s\n' "$n" \
            "$(kafka_port "$n")" "$(amqp_port "$n")" "$(raft_port "$n")" "$state"
    done
    local bs
    if ! bs="$(first_live)"; then
        echo "no node running"
        return 0
    fi
    ensure_binary
    echo
    "$BIN" cluster status --bootstrap-server "$bs" || log "arctern cluster status failed"
}

cmd="${1:-}"
[ -n "$cmd" ] && shift || true
check_nodes "$@"
case "$cmd" in
    start)
        ensure_binary
        mkdir -p "$DIR"
        nodes=($(targets "$@"))
        for n in "${nodes[@]}"; do start_node "$n"; done
        for n in "${nodes[@]}"; do wait_node "$n"; done
        live=0
        for n in "${NODES[@]}"; do [ -n "$(node_pid "$n")" ] && live=$((live + 1)); done
        if command -v python3 >/dev/null; then
            python3 "$ROOT/scripts/kadmin.py" wait-brokers --bootstrap "$(bootstrap_all)" \
                --count "$live" --timeout 60 >&2 || die "the cluster did not form (see the logs)"
        fi
        echo
        status
        echo
        echo "bootstrap servers: $(bootstrap_all)"
        ;;
    stop)
        # one at a time, so each controlled shutdown can move leadership to the others
        for n in $(targets "$@"); do stop_node "$n" TERM; done
        ;;
    kill)
        [ "$#" -gt 0 ] || die "usage: cluster.sh kill N.."
        for n in $(targets "$@"); do stop_node "$n" KILL; done
        ;;
    restart)
        for n in $(targets "$@"); do stop_node "$n" TERM; done
        exec bash "$0" start "$@"
        ;;
    status)
        status
        ;;
    wipe)
        for n in "${NODES[@]}"; do stop_node "$n" TERM; done
        rm -rf "$DIR"
        log "deleted $DIR"
        ;;
    *)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        [ -z "$cmd" ] || exit 2
        ;;
esac
