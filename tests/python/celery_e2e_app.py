"""The Celery app of test_amqp_clients.py, with Arctern as the broker.

Worker subprocesses import this module (`celery -A celery_e2e_app worker`), configured from
the environment:
  ARCTERN_CELERY_BROKER     amqp://guest:guest@127.0.0.1:PORT//
  ARCTERN_CELERY_RESULTS    a directory for Celery's file-system result backend
  ARCTERN_CELERY_ACKS_LATE  "1" for task_acks_late=True
The test process builds its own app with make_app() and sends tasks by name.

Arctern has no direct reply-to, so the result backend is the file system, not rpc://.
Arctern refuses the queue arguments it does not implement (x-message-ttl, x-expires) with
406, and Celery's remote-control mailbox (pidbox) declares its queues with both, so remote
control is off (as are gossip, mingle and heartbeats, by the worker's command line).

worker_prefetch_multiplier is 8, not 1: with prefetch 1 the worker's kombu event loop
sometimes schedules an ack (call_soon) after it has computed its poll timeout and then
sleeps in epoll for up to 10 s before sending it, so the next task waits 10 s (a client
quirk, celery/celery#7718, kombu PR #1587; it does not depend on the broker)."""
from __future__ import annotations

import os
import time
from pathlib import Path

from celery import Celery


def make_app(broker_url: str, results_dir: str, acks_late: bool) -> Celery:
    app = Celery("celery_e2e_app", broker=broker_url, backend="file://" + results_dir)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        worker_enable_remote_control=False,
        worker_prefetch_multiplier=8,
        task_acks_late=acks_late,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"confirm_publish": True},
        worker_hijack_root_logger=False,
    )

    @app.task(name="celery_e2e_app.add")
    def add(x, y):
        return x + y

    @app.task(name="celery_e2e_app.journal", bind=True)
    def journal(self, path, key, seconds_first_time):
        """Appends "start <key> <pid> <redelivered>" to `path`; on a first delivery
        sleeps `seconds_first_time` (time for the test to kill the worker), then appends
        "done <key> <pid>"."""
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        with open(path, "a") as f:
            f.write(f"start {key} {os.getpid()} {int(redelivered)}\n")
        if not redelivered:
            deadline = time.monotonic() + seconds_first_time
            while time.monotonic() < deadline:
                time.sleep(0.05)
        with open(path, "a") as f:
            f.write(f"done {key} {os.getpid()}\n")
        return key

    return app


def lines(path) -> list[str]:
    p = Path(path)
    return p.read_text().splitlines() if p.exists() else []


if os.environ.get("ARCTERN_CELERY_BROKER"):
    app = make_app(os.environ["ARCTERN_CELERY_BROKER"],
                   os.environ.get("ARCTERN_CELERY_RESULTS", "/tmp/celery-results"),
                   os.environ.get("ARCTERN_CELERY_ACKS_LATE") == "1")
