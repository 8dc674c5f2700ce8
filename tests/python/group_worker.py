"""A consumer-group member in its own process (confluent-kafka / librdkafka), for the
consumer group tests: the test can SIGKILL it at a chosen point, like a real crash.

Every event goes to --out as one JSON line, written and flushed before the worker goes on
(so a SIGKILL loses nothing that was logged; the OS keeps what was written):

    {"ev": "started", "pid": ..., "t": ...}
    {"ev": "assigned" | "revoked" | "lost", "partitions": [[topic, p], ...], "t": ...}
    {"ev": "processed", "p": P, "o": O, "v": "<value>", "t": ...}
    {"ev": "committed", "offsets": {"P": next_offset, ...}, "t": ...}
    {"ev": "commit_failed", "error": "...", "t": ...}
    {"ev": "polled_unprocessed", "offsets": [[p, o], ...], "t": ...}
    {"ev": "hang", "t": ...}                 (the crash point: it sleeps until killed)
    {"ev": "error", "code": C, "name": N, "str": S, "fatal": bool, "t": ...}
    {"ev": "idle", "t": ...}                  (--stop-after reached: paused, still a member)
    {"ev": "closed", "t": ...}

Modes:
  manual (default): enable.auto.commit=false; each polled batch is processed (logged), then
      its next offsets are committed synchronously ("process, then commit": at least once).
      --hang-after K: after processing the K-th record, before committing its batch, log
      "hang" and sleep (the test kills the process there).
      --stop-after K: after K records are processed and committed, pause the assignment and
      keep polling (the member stays in the group with a lag).
  autocommit: enable.auto.commit=true (offsets stored at poll time, committed every
      --auto-commit-interval-ms): the first polled batch is logged as "polled_unprocessed",
      then the worker hangs before processing it ("committed before processing").

SIGTERM: leave the loop, close the consumer (LeaveGroup for a dynamic member), exit 0.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

stop = False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--client-id", default="group-worker")
    ap.add_argument("--mode", choices=["manual", "autocommit"], default="manual")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--hang-after", type=int, default=0)
    ap.add_argument("--stop-after", type=int, default=0)
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    ap.add_argument("--heartbeat-interval-ms", type=int, default=500)
    ap.add_argument("--max-poll-interval-ms", type=int, default=10000)
    ap.add_argument("--auto-commit-interval-ms", type=int, default=200)
    ap.add_argument("--offset-reset", default="earliest")
    ap.add_argument("--strategy", default="")
    ap.add_argument("--instance-id", default="")
    ap.add_argument("--process-delay-ms", type=int, default=0,
                    help="sleep this long per processed batch (slow consumer)")
    a = ap.parse_args()

    out = open(a.out, "a", buffering=1)

    def log(ev: str, **kw):
        kw = {"ev": ev, "t": time.time(), **kw}
        out.write(json.dumps(kw) + "\n")
        out.flush()

    def on_error(err: KafkaError):
        log("error", code=err.code(), name=err.name(), str=err.str(), fatal=err.fatal())

    def on_term(*_):
        global stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "client.id": a.client_id,
        "auto.offset.reset": a.offset_reset,
        "session.timeout.ms": a.session_timeout_ms,
        "heartbeat.interval.ms": a.heartbeat_interval_ms,
        "max.poll.interval.ms": a.max_poll_interval_ms,
        "fetch.wait.max.ms": 100,
        "topic.metadata.refresh.interval.ms": 2000,
        "error_cb": on_error,
        "log_level": 3,
    }
    if a.mode == "manual":
        conf["enable.auto.commit"] = False
    else:
        conf["enable.auto.commit"] = True
        conf["enable.auto.offset.store"] = True
        conf["auto.commit.interval.ms"] = a.auto_commit_interval_ms
    if a.strategy:
        conf["partition.assignment.strategy"] = a.strategy
    if a.instance_id:
        conf["group.instance.id"] = a.instance_id
    c = Consumer(conf)
    log("started", pid=os.getpid())

    def parts(ps):
        return sorted([tp.topic, tp.partition] for tp in ps)

    c.subscribe([a.topic],
                on_assign=lambda _c, ps: log("assigned", partitions=parts(ps)),
                on_revoke=lambda _c, ps: log("revoked", partitions=parts(ps)),
                on_lost=lambda _c, ps: log("lost", partitions=parts(ps)))
    processed = 0
    idle = False
    try:
        while not stop:
            try:
                msgs = c.consume(num_messages=a.batch, timeout=0.2)
            except KafkaException as e:
                on_error(e.args[0])
                if e.args[0].fatal():
                    break
                continue
            if idle:
                continue
            batch = []
            for m in msgs:
                if m.error():
                    if m.error().fatal():
                        on_error(m.error())
                        raise SystemExit(3)
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        on_error(m.error())
                    continue
                batch.append(m)
            if not batch:
                continue
            if a.mode == "autocommit":
                # stored at poll time, committed by the auto-commit timer: "committed
                # before processing"; crash before processing
                log("polled_unprocessed", offsets=[[m.partition(), m.offset()] for m in batch])
                log("hang")
                while True:
                    time.sleep(3600)
            nxt: dict[int, int] = {}
            for m in batch:
                log("processed", p=m.partition(), o=m.offset(),
                    v=(m.value() or b"").decode(errors="replace"))
                processed += 1
                nxt[m.partition()] = m.offset() + 1
                if a.hang_after and processed >= a.hang_after:
                    log("hang")      # crash point: processed, not committed
                    while True:
                        time.sleep(3600)
            if a.process_delay_ms:
                time.sleep(a.process_delay_ms / 1000)
            try:
                c.commit(offsets=[TopicPartition(a.topic, p, o) for p, o in nxt.items()],
                         asynchronous=False)
                log("committed", offsets={str(p): o for p, o in nxt.items()})
            except KafkaException as e:
                log("commit_failed", error=str(e.args[0]), code=e.args[0].code())
                if e.args[0].fatal():
                    break
            if a.stop_after and processed >= a.stop_after:
                c.pause(c.assignment())
                idle = True
                log("idle")
    finally:
        try:
            c.close()
        except Exception as e:      # noqa: BLE001 - a fenced consumer may refuse
            log("close_failed", error=repr(e))
        log("closed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
