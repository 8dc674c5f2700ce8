#!/usr/bin/env bash
# Fetch throughput with the storage read checks (docs/reliability.md, "Storage faults")
# beside without them (`storage.verify.reads = false`), on the same log, same run:
# one broker on a scratch data dir fills a topic, then is restarted alternately with the
# checks on and off, and `arctern bench --mode consume` reads the whole topic each time.
#
#   scripts/bench-verify.sh                       # defaults below
#   RECORDS=4000000 BATCH=100 scripts/bench-verify.sh
#
# Knobs (environment): RECORDS (default 3000000), RECORD_SIZE (100), BATCH (records per
# batch, default 100: small batches stress the per-batch checks), ROUNDS (on/off pairs,
# default 3), ARCTERN_BIN (default target/release/arctern; built if missing).
# Loopback only; stops only the broker it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${ARCTERN_BIN:-target/release/arctern}
RECORDS=${RECORDS:-3000000}
RECORD_SIZE=${RECORD_SIZE:-100}
BATCH=${BATCH:-100}
ROUNDS=${ROUNDS:-3}
[ -x "$BIN" ] || cargo build --release --locked -p arctern --bin arctern
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/arctern-bench-verify.XXXXXX")
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill "$PID"; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
AMQP_PORT=$(free_port)
HTTP_PORT=$(free_port)

start() {   # $1: true|false
    printf '"storage.verify.reads" = %s\n"management.listen" = "127.0.0.1:%s"\n' "$1" "$HTTP_PORT" > "$SCRATCH/arctern.toml"
    "$BIN" serve --data-dir "$SCRATCH/data" --kafka-listen "127.0.0.1:$PORT" \
        --amqp-listen "127.0.0.1:$AMQP_PORT" --config "$SCRATCH/arctern.toml" \
        >> "$SCRATCH/broker.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 300); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$PORT),1)" 2>/dev/null; then return; fi
        sleep 0.1
    done
    echo "broker did not start; log:" >&2; tail -20 "$SCRATCH/broker.log" >&2; exit 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }

consume_rate() {   # prints the consume phase's MB/s
    "$BIN" bench --bootstrap "127.0.0.1:$PORT" --topic verify-bench --mode consume --json \
        2>> "$SCRATCH/bench.log" | python3 -c 'import json,sys; print(round(json.loads(sys.stdin.read())["consume"]["mb_per_sec"], 1))'
}

start true
echo "filling: $RECORDS records of $RECORD_SIZE bytes, $BATCH per batch"
"$BIN" bench --bootstrap "127.0.0.1:$PORT" --topic verify-bench --mode produce \
    --records "$RECORDS" --record-size "$RECORD_SIZE" --batch-records "$BATCH" > "$SCRATCH/produce.log" 2>&1
stop
on=(); off=()
for r in $(seq 1 "$ROUNDS"); do
    start true;  on+=("$(consume_rate)");  stop
    start false; off+=("$(consume_rate)"); stop
    echo "round $r: checks on ${on[-1]} MB/s, off ${off[-1]} MB/s"
done
python3 - "${on[*]}" "${off[*]}" <<'PY'
import statistics, sys
on = [float(x) for x in sys.argv[1].split()]
off = [float(x) for x in sys.argv[2].split()]
mo, mf = statistics.median(on), statistics.median(off)
print(f"median consume: checks on {mo:.1f} MB/s, off {mf:.1f} MB/s, on/off {mo / mf:.3f}")
PY
