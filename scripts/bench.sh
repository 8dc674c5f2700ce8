#!/usr/bin/env bash
# Arctern benchmark: measures the disk with fio, then the broker on the same filesystem, and
# prints the broker's figures against the disk's (see docs/benchmarks.md). Then the same
# acks=all produce against a local 3-node cluster (replication factor 3,
# min.insync.replicas 2) in the same run, and prints the replicated figures beside the
# single-node ones with their ratio.
#
#   scripts/bench.sh                  # defaults below
#   RECORDS=2000000 scripts/bench.sh  # knobs are environment variables
#
# Knobs (environment):
#   BENCH_DIR     parent of the scratch directory (fio files + broker data dir); the
#                 filesystem measured. Default: the cargo target directory.
#   RECORDS       records to produce per run (default 5000000)
#   RUNS          produce runs (a topic each) and consume runs (default 3)
#   RECORD_SIZE   bytes per record value (default 100)
#   BATCH         records per RecordBatch (default 1000)
#   PRODUCERS     producer connections (default 4)
#   INFLIGHT      pipelined produce requests per connection (default 1)
#   PARTITIONS    topic partitions (default 1)
#   CONSUMERS     consumer connections (default 1)
#   FIO_SECONDS   runtime of each fio job (default 8)
#   CLUSTER       1: also benchmark a 3-node cluster (default); 0: single node only
#   CLUSTER_RUNS  produce runs against the cluster (default: RUNS)
#   CLUSTER_MIN_ISR  min.insync.replicas of the cluster topics (default 2)
#   TLS=1         also run the single-node produce and consume over TLS (an SSL listener
#                 beside the PLAINTEXT one, a throwaway CA made with openssl) and report
#                 plaintext vs TLS side by side (default 0)
#   KEEP=1        keep the scratch directory (broker log, fio and bench JSON)
#   SKIP_BUILD=1  do not run cargo build; use ARCTERN_BIN (default target/release/arctern)
#
# The cluster: three `arctern serve --node-id N --controller-quorum-voters ...` processes
# on loopback with data dirs in the scratch directory. `arctern bench` sends every request
# to one broker, so each cluster topic is created beforehand (scripts/kadmin.py, raw
# CreateTopics) with node 1 as the preferred leader of every partition, the run waits for
# the full ISR, checks the placement, and points the bench at the leader (with the same
# --replication-factor / --topic-config, which the bench would use to create it).
#
# Loopback only. Stops only the brokers it started, by PID. Needs root or sudo to install fio
# when it is missing (apt-get).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RECORDS="${RECORDS:-5000000}"
RUNS="${RUNS:-3}"
RECORD_SIZE="${RECORD_SIZE:-100}"
BATCH="${BATCH:-1000}"
PRODUCERS="${PRODUCERS:-4}"
INFLIGHT="${INFLIGHT:-1}"
PARTITIONS="${PARTITIONS:-1}"
CONSUMERS="${CONSUMERS:-1}"
FIO_SECONDS="${FIO_SECONDS:-8}"
CLUSTER="${CLUSTER:-1}"
CLUSTER_RUNS="${CLUSTER_RUNS:-$RUNS}"
CLUSTER_MIN_ISR="${CLUSTER_MIN_ISR:-2}"
TLS="${TLS:-0}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BENCH_DIR="${BENCH_DIR:-$TARGET_DIR}"

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is needed to read fio's and the bench's JSON"

# --- build (once) -------------------------------------------------------------------------
BIN="${ARCTERN_BIN:-$TARGET_DIR/release/arctern}"
if [ "${SKIP_BUILD:-0}" = 1 ]; then
    log "SKIP_BUILD=1: using $BIN as it is"
else
    log "building arctern (release)"
    cargo build --release -p arctern >&2
fi
[ -x "$BIN" ] || die "no binary at $BIN"

# --- fio ---------------------------------------------------------------------------------
if ! command -v fio >/dev/null; then
    log "installing fio"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || die "fio missing and not root (install fio)"
        SUDO="sudo"
    fi
    $SUDO apt-get update >&2
    $SUDO apt-get install -y fio >&2
fi

mkdir -p "$BENCH_DIR"
WORK="$(mktemp -d "$BENCH_DIR/arctern-bench.XXXXXX")"
BROKER_PID=""

stop_broker() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$BROKER_PID" 2>/dev/null; then
            log "broker $BROKER_PID ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL "$BROKER_PID" 2>/dev/null || true
        fi
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    BROKER_PID=""
}

CLUSTER_PIDS=()

stop_cluster() {
    local pid i
    # one node at a time: each controlled shutdown can still move leadership to the others
    for pid in "${CLUSTER_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "cluster node pid $pid ignored SIGTERM for 15 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    CLUSTER_PIDS=()
}

cleanup() {
    stop_broker
    stop_cluster
    if [ "${KEEP:-0}" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FS="$(df -PT "$WORK" | awk 'NR==2 {print $1" ("$2") mounted on "$7}')"
log "scratch directory $WORK on $FS"

# fio_job NAME ARGS... : runs one fio job in $WORK/fio, JSON to $WORK/NAME.json
fio_job() {
    local name="$1"; shift
    mkdir -p "$WORK/fio"
    timeout $((FIO_SECONDS + 60)) fio --name="$name" --directory="$WORK/fio" \
        --runtime="$FIO_SECONDS" --time_based --output-format=json "$@" \
        >"$WORK/$name.json" 2>"$WORK/$name.err"
}

# fio_field FILE EXPR : a figure from a fio JSON result (w = jobs[0].write, j = jobs[0])
fio_field() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
j = d["jobs"][0]
w = j["write"]
print(eval(sys.argv[2]))
EOF
}

log "fio: sequential write, 1 MiB blocks, O_DIRECT, ${FIO_SECONDS}s"
SEQ_MODE="direct"
if ! fio_job seqwrite --rw=write --bs=1M --size=1G --direct=1 --ioengine=psync; then
    log "O_DIRECT refused ($(head -c 200 "$WORK/seqwrite.err")); using buffered writes + fsync at end"
    SEQ_MODE="buffered+end_fsync"
    fio_job seqwrite --rw=write --bs=1M --size=1G --end_fsync=1 --ioengine=psync \
        || die "fio seqwrite failed: $(cat "$WORK/seqwrite.err")"
fi
rm -rf "$WORK/fio"
SEQ_MBS="$(fio_field "$WORK/seqwrite.json" 'round(w["bw_bytes"] / 1e6, 1)')"

log "fio: 64 KiB writes, fdatasync after each, ${FIO_SECONDS}s"
fio_job sync64k --rw=write --bs=64k --size=256M --fdatasync=1 --ioengine=sync \
    || die "fio sync64k failed: $(cat "$WORK/sync64k.err")"
rm -rf "$WORK/fio"
SYNC_MBS="$(fio_field "$WORK/sync64k.json" 'round(w["bw_bytes"] / 1e6, 1)')"
SYNC_IOPS="$(fio_field "$WORK/sync64k.json" 'round(w["iops"])')"
SYNC_P99_US="$(fio_field "$WORK/sync64k.json" 'round(j["sync"]["lat_ns"]["percentile"]["99.000000"] / 1000) if "sync" in j else "n/a"')"

# --- broker --------------------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# TLS=1: a CA and a server certificate for 127.0.0.1 (Kafka's PEM keystore: key + chain)
LISTEN_EXTRA=()
if [ "$TLS" = 1 ]; then
    command -v openssl >/dev/null || die "TLS=1 needs the openssl CLI"
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
        cat server.key server.pem >keystore.pem
        printf '"ssl.keystore.type" = "PEM"\n"ssl.keystore.location" = "%s"\n' "$WORK/tls/keystore.pem" >arctern.toml
    ) >/dev/null 2>&1 || die "making the TLS certificates failed"
    LISTEN_EXTRA=(--config "$WORK/tls/arctern.toml")
fi

start_broker() {
    local attempt port
    for attempt in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 40000))
        port_free "$port" && port_free $((port + 1)) || continue
        rm -rf "$WORK/data"
        local listen="127.0.0.1:$port"
        if [ "$TLS" = 1 ]; then
            listen="PLAINTEXT://127.0.0.1:$port,SSL://127.0.0.1:$((port + 1))"
        fi
        "$BIN" serve --data-dir "$WORK/data" --kafka-listen "$listen" \
            --amqp-listen 127.0.0.1:0 "${LISTEN_EXTRA[@]}" \
            >"$WORK/broker.log" 2>&1 &
        BROKER_PID=$!
        for _ in $(seq 1 300); do
            if ! kill -0 "$BROKER_PID" 2>/dev/null; then
                break
            fi
            if ! port_free "$port"; then
                PORT="$port"
                return 0
            fi
            sleep 0.1
        done
        log "broker did not come up on port $port (attempt $attempt); log tail:"
        tail -n 20 "$WORK/broker.log" >&2 || true
        stop_broker
    done
    die "could not start the broker"
}

log "starting broker"
PORT=""
start_broker
log "broker pid $BROKER_PID on 127.0.0.1:$PORT, data in $WORK/data"

run_bench() {
    local out="$1"; shift
    timeout 600 "$BIN" bench --bootstrap "127.0.0.1:$PORT" --partitions "$PARTITIONS" --json "$@" \
        >"$out" || die "arctern bench $* failed (broker log: $WORK/broker.log; KEEP=1 keeps it)"
}

# start_cluster: three nodes on free ports, data in $WORK/cluster/node-N; sets CLUSTER_BS
start_cluster() {
    local attempt n base ok voters
    for attempt in 1 2 3 4 5; do
        base=$((20000 + RANDOM % 30000))
        ok=1
        for n in 1 2 3; do
            port_free $((base + n)) && port_free $((base + 10 + n)) || ok=0
        done
        [ "$ok" = 1 ] || continue
        voters="1@127.0.0.1:$((base + 11)),2@127.0.0.1:$((base + 12)),3@127.0.0.1:$((base + 13))"
        rm -rf "$WORK/cluster"
        CLUSTER_PIDS=()
        for n in 1 2 3; do
            mkdir -p "$WORK/cluster/node-$n"
            "$BIN" serve --node-id "$n" --controller-quorum-voters "$voters" \
                --kafka-listen "127.0.0.1:$((base + n))" --data-dir "$WORK/cluster/node-$n/data" \
                --amqp-listen 127.0.0.1:0 \
                >"$WORK/cluster/node-$n/broker.log" 2>&1 &
            CLUSTER_PIDS+=($!)
        done
        CLUSTER_BS="127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))"
        if python3 "$ROOT/scripts/kadmin.py" wait-brokers --bootstrap "$CLUSTER_BS" --count 3 \
            --timeout 60 >&2; then
            return 0
        fi
        log "cluster did not form on ports $((base + 1))-$((base + 13)) (attempt $attempt); log tails:"
        for n in 1 2 3; do tail -n 10 "$WORK/cluster/node-$n/broker.log" >&2 || true; done
        stop_cluster
    done
    die "could not start the 3-node cluster"
}

# cluster_topic TOPIC: creates it (RF 3, min.insync.replicas, node 1 preferred leader of
# every partition), waits for the full ISR, prints the leader's host:port
cluster_topic() {
    local topic="$1" leaders
    python3 "$ROOT/scripts/kadmin.py" create-topic --bootstrap "$CLUSTER_BS" --topic "$topic" \
        --partitions "$PARTITIONS" --replication-factor 3 \
        --config "min.insync.replicas=$CLUSTER_MIN_ISR" --leader 1 >&2 \
        || die "creating cluster topic $topic failed"
    leaders="$(python3 "$ROOT/scripts/kadmin.py" leaders --bootstrap "$CLUSTER_BS" \
        --topic "$topic" --wait-isr --timeout 60)" || die "cluster topic $topic not ready"
    if awk '{ if (split($4, r, ",") != 3) bad = 1 } END { exit !bad }' <<<"$leaders"; then
        die "cluster topic $topic does not have 3 replicas per partition: $leaders"
    fi
    if [ "$(awk '{print $3}' <<<"$leaders" | sort -u | wc -l)" != 1 ]; then
        die "the partitions of $topic have leaders on several nodes and arctern bench talks to one broker: $leaders"
    fi
    awk 'NR==1 {print $3}' <<<"$leaders"
}

# The machine is small and may be shared, so each measurement is repeated and the report
# gives the median and every run.
for i in $(seq 1 "$RUNS"); do
    log "produce run $i/$RUNS: $RECORDS x $RECORD_SIZE B, $BATCH/batch, $PRODUCERS conns x $INFLIGHT in flight, acks=all"
    run_bench "$WORK/produce$i.json" --topic "bench-$$-$i" --mode produce --records "$RECORDS" \
        --record-size "$RECORD_SIZE" --batch-records "$BATCH" --producers "$PRODUCERS" \
        --inflight "$INFLIGHT" --acks all
done
for i in $(seq 1 "$RUNS"); do
    log "consume run $i/$RUNS: all of topic bench-$$-$RUNS from offset 0 (warm log)"
    run_bench "$WORK/consume$i.json" --topic "bench-$$-$RUNS" --mode consume --consumers "$CONSUMERS"
done
if [ "$TLS" = 1 ]; then
    # The same runs through the SSL listener of the same broker.
    for i in $(seq 1 "$RUNS"); do
        log "TLS produce run $i/$RUNS"
        timeout 600 "$BIN" bench --bootstrap "127.0.0.1:$((PORT + 1))" --tls-ca "$WORK/tls/ca.pem" \
            --partitions "$PARTITIONS" --json --topic "bench-tls-$$-$i" --mode produce \
            --records "$RECORDS" --record-size "$RECORD_SIZE" --batch-records "$BATCH" \
            --producers "$PRODUCERS" --inflight "$INFLIGHT" --acks all >"$WORK/tls-produce$i.json" \
            || die "arctern bench over TLS failed (broker log: $WORK/broker.log)"
    done
    for i in $(seq 1 "$RUNS"); do
        log "TLS consume run $i/$RUNS"
        timeout 600 "$BIN" bench --bootstrap "127.0.0.1:$((PORT + 1))" --tls-ca "$WORK/tls/ca.pem" \
            --partitions "$PARTITIONS" --json --topic "bench-tls-$$-$RUNS" --mode consume \
            --consumers "$CONSUMERS" >"$WORK/tls-consume$i.json" \
            || die "arctern bench over TLS failed (broker log: $WORK/broker.log)"
    done
fi
LOG_BYTES="$(du -sb "$WORK/data" | awk '{print $1}')"
stop_broker

# --- 3-node cluster: RF 3, min.insync.replicas 2, acks=all -----------------------------------
if [ "$CLUSTER" = 1 ]; then
    log "starting a 3-node cluster"
    start_cluster
    log "cluster pids ${CLUSTER_PIDS[*]} on $CLUSTER_BS, data in $WORK/cluster"
    for i in $(seq 1 "$CLUSTER_RUNS"); do
        topic="bench-rf3-$$-$i"
        leader="$(cluster_topic "$topic")"
        log "cluster produce run $i/$CLUSTER_RUNS: $topic (RF 3, min.insync.replicas $CLUSTER_MIN_ISR), leader $leader, acks=all"
        timeout 600 "$BIN" bench --bootstrap "$leader" --topic "$topic" --partitions "$PARTITIONS" \
            --replication-factor 3 --topic-config "min.insync.replicas=$CLUSTER_MIN_ISR" \
            --json --mode produce --records "$RECORDS" --record-size "$RECORD_SIZE" \
            --batch-records "$BATCH" --producers "$PRODUCERS" --inflight "$INFLIGHT" --acks all \
            >"$WORK/cluster-produce$i.json" \
            || die "arctern bench against the cluster failed (logs: $WORK/cluster/node-*/broker.log; KEEP=1 keeps them)"
    done
    stop_cluster
fi

# --- report --------------------------------------------------------------------------------
LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$WORK" "$RUNS" "$SEQ_MBS" "$SEQ_MODE" "$SYNC_MBS" "$SYNC_IOPS" "$SYNC_P99_US" \
    "$LOG_BYTES" "$FS" "$LOAD" "$([ "$CLUSTER" = 1 ] && echo "$CLUSTER_RUNS" || echo 0)" \
    "$CLUSTER_MIN_ISR" "$TLS" <<'EOF'
import json, statistics, sys
(work, runs, seq, seq_mode, sync_mbs, sync_iops, sync_p99, log_bytes, fs, load, cruns,
 min_isr, tls) = sys.argv[1:]
runs, seq, sync_mbs, cruns = int(runs), float(seq), float(sync_mbs), int(cruns)
P = [json.load(open(f"{work}/produce{i}.json")) for i in range(1, runs + 1)]
C = [json.load(open(f"{work}/consume{i}.json"))["consume"] for i in range(1, runs + 1)]
prod = [x["produce"] for x in P]
med = statistics.median
def each(xs, fmt="{:.0f}"):
    return " / ".join(fmt.format(x) for x in xs)
def ok(b):
    return "MET" if b else "NOT MET"

# Latency comes from the run with the median payload throughput.
mid = sorted(prod, key=lambda x: x["mb_per_sec"])[len(prod) // 2]
prod_mb = med([x["mb_per_sec"] for x in prod])
pct = 100.0 * prod_mb / sync_mbs if sync_mbs > 0 else float("nan")
fetch_mb = med([c["mb_per_sec"] for c in C])
for c in C:
    if c["records"] != prod[-1]["records"]:
        print(f"WARNING: consumed {c['records']} records, produced {prod[-1]['records']}")
lat = mid["latency_ms"]
rows = [
    ("filesystem", fs),
    ("load average at the end", load),
    (f"fio seq write 1 MiB ({seq_mode})", f"{seq:.1f} MB/s"),
    ("fio 64 KiB write + fdatasync", f"{sync_mbs:.1f} MB/s, {sync_iops} IOPS, fdatasync p99 {sync_p99} us"),
    ("produce setup", f"{prod[0]['records']} x {P[0]['record_size']} B, {P[0]['batch_records']}/batch, "
                      f"{P[0]['producers']} conns x {P[0]['inflight']} in flight, acks=all, {runs} runs"),
    ("produce MB/s payload, median (runs)", f"{prod_mb:.1f}  ({each([x['mb_per_sec'] for x in prod], '{:.1f}')})"),
    ("produce MB/s of batches, median", f"{med([x['batch_mb_per_sec'] for x in prod]):.1f}"),
    ("produce msgs/s, median", f"{med([x['msgs_per_sec'] for x in prod]):,.0f}"),
    ("produce / fio 64 KiB fdatasync", f"{pct:.0f}%  (target >= 50%: {ok(pct >= 50)})"),
    ("produce latency ms (median run)",
     "p50 {p50:.2f}  p99 {p99:.2f}  p99.9 {p999:.2f}  max {max:.2f}".format(**lat) if lat else "n/a"),
    ("fetch MB/s warm log, median (runs)", f"{fetch_mb:.0f}  ({each([c['mb_per_sec'] for c in C])})"),
    ("fetch msgs/s, median", f"{med([c['msgs_per_sec'] for c in C]):,.0f}"),
    ("fetch >= 1000 MB/s", ok(fetch_mb >= 1000)),
    ("data dir size after run", f"{int(log_bytes) / 1e6:.1f} MB"),
]

def lat_str(l):
    return "p50 {p50:.2f}  p99 {p99:.2f}  p99.9 {p999:.2f}  max {max:.2f}".format(**l) if l else "n/a"

if cruns:
    CP = [json.load(open(f"{work}/cluster-produce{i}.json"))["produce"] for i in range(1, cruns + 1)]
    cmid = sorted(CP, key=lambda x: x["mb_per_sec"])[len(CP) // 2]
    c_mb = med([x["mb_per_sec"] for x in CP])
    c_msgs = med([x["msgs_per_sec"] for x in CP])
    s_msgs = med([x["msgs_per_sec"] for x in prod])
    ratio = 100.0 * c_mb / prod_mb if prod_mb > 0 else float("nan")
    rows += [
        ("acks=all produce, single node: MB/s, msgs/s",
         f"{prod_mb:.1f}  {s_msgs:,.0f}  (latency ms: {lat_str(lat)})"),
        (f"acks=all produce, 3 nodes RF=3 min.insync={min_isr}: MB/s, msgs/s",
         f"{c_mb:.1f}  {c_msgs:,.0f}  (latency ms: {lat_str(cmid['latency_ms'])})"),
        ("  cluster MB/s per run", each([x["mb_per_sec"] for x in CP], "{:.1f}")),
        ("replicated / single-node throughput", f"{ratio:.0f}%  (target >= 50%: {ok(ratio >= 50)})"),
    ]
    if lat and cmid["latency_ms"]:
        rows.append(("replicated / single-node latency p50, p99",
                     f"{cmid['latency_ms']['p50'] / lat['p50']:.1f}x, "
                     f"{cmid['latency_ms']['p99'] / lat['p99']:.1f}x"))

if tls == "1":
    TP = [json.load(open(f"{work}/tls-produce{i}.json"))["produce"] for i in range(1, runs + 1)]
    TC = [json.load(open(f"{work}/tls-consume{i}.json"))["consume"] for i in range(1, runs + 1)]
    tmid = sorted(TP, key=lambda x: x["mb_per_sec"])[len(TP) // 2]
    t_mb = med([x["mb_per_sec"] for x in TP])
    t_fetch = med([c["mb_per_sec"] for c in TC])
    rows += [
        ("produce MB/s plaintext vs TLS, median",
         f"{prod_mb:.1f} vs {t_mb:.1f}  ({100.0 * t_mb / prod_mb if prod_mb else float('nan'):.0f}%; TLS runs {each([x['mb_per_sec'] for x in TP], '{:.1f}')})"),
        ("produce latency ms over TLS (median run)", lat_str(tmid["latency_ms"])),
        ("fetch MB/s plaintext vs TLS, median",
         f"{fetch_mb:.0f} vs {t_fetch:.0f}  ({100.0 * t_fetch / fetch_mb if fetch_mb else float('nan'):.0f}%; TLS runs {each([c['mb_per_sec'] for c in TC])})"),
    ]

w = max(len(k) for k, _ in rows)
print()
print("Arctern benchmark (MB = 10^6 bytes)")
print("-" * (w + 70))
for k, v in rows:
    print(f"{k:<{w}}  {v}")
EOF
