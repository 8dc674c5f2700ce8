"""AMQP 0-9-1 end to end with clients nobody here wrote: aio-pika (on aiormq), kombu (on
py-amqp) and Celery (on kombu), against the real `arctern serve`.

Every assertion is RabbitMQ's documented behaviour (publisher confirms, redelivered flag,
prefetch, transactions, reply codes), so these tests pass against RabbitMQ too. aio-pika
tests run their coroutine with asyncio.run (no pytest-asyncio needed)."""
from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import aiormq
import pytest

pytestmark = pytest.mark.timeout(120)

HERE = Path(__file__).resolve().parent


def url(b) -> str:
    return f"amqp://guest:guest@127.0.0.1:{b.amqp_port}/"


def run(coro, timeout: float = 60.0):
    """Run one test coroutine, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def persistent(body: bytes, **kw) -> aio_pika.Message:
    return aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **kw)


async def get_n(queue, n: int, timeout: float = 10.0, no_ack: bool = True):
    """basic.get until n messages or timeout."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        m = await queue.get(no_ack=no_ack, fail=False)
        if m is None:
            await asyncio.sleep(0.02)
            continue
        out.append(m)
    return out


# ----------------------------------------------------------------------------- aio-pika


def test_aiopika_confirms_on_a_durable_queue_then_manual_ack_consume(broker):
    """Every persistent publish on a confirm channel is acked by the broker (aio-pika's
    publish returns Basic.Ack); a manual-ack consumer gets them all in order, not
    redelivered, with their properties; acked messages are gone."""
    n = 500

    async def main():
        conn = await aio_pika.connect(url(broker))
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            q = await ch.declare_queue("aio-durable", durable=True)
            acks = await asyncio.gather(*(
                ch.default_exchange.publish(
                    persistent(f"m{i}".encode(), message_id=f"id-{i}",
                               content_type="text/plain", headers={"i": i}),
                    routing_key="aio-durable")
                for i in range(n)))
            assert all(isinstance(a, aiormq.spec.Basic.Ack) for a in acks)
            declared = await ch.declare_queue("aio-durable", passive=True)
            assert declared.declaration_result.message_count == n

            cch = await conn.channel()
            await cch.set_qos(prefetch_count=50)
            cq = await cch.get_queue("aio-durable")
            got = []
            async with cq.iterator() as it:
                async for msg in it:
                    got.append((msg.body, msg.message_id, msg.headers.get("i"),
                                msg.delivery_mode, msg.redelivered))
                    await msg.ack()
                    if len(got) == n:
                        break
            assert [g[0] for g in got] == [f"m{i}".encode() for i in range(n)]
            assert [g[1] for g in got] == [f"id-{i}" for i in range(n)]
            assert [g[2] for g in got] == list(range(n))
            assert all(g[3] == aio_pika.DeliveryMode.PERSISTENT for g in got)
            assert not any(g[4] for g in got)
            await asyncio.sleep(0.2)
            assert await cq.get(fail=False) is None

    run(main())


@pytest.mark.parametrize("close", ["channel", "connection"])
def test_aiopika_unacked_messages_are_redelivered_to_another_consumer(broker, close):
    """A consumer that closes its channel (or connection) with unacked deliveries: another
    consumer receives exactly those, with redelivered=True; the acked ones never again."""
    qname = f"aio-redeliver-{close}"

    async def main():
        pub = await aio_pika.connect(url(broker))
        async with pub:
            ch = await pub.channel(publisher_confirms=True)
            await ch.declare_queue(qname, durable=True)
            for i in range(10):
                await ch.default_exchange.publish(persistent(f"r{i}".encode()), routing_key=qname)

            first = await aio_pika.connect(url(broker))
            fch = await first.channel()
            fq = await fch.get_queue(qname)
            seen = []
            async with fq.iterator() as it:
                async for msg in it:
                    seen.append(msg)
                    if len(seen) == 10:
                        break
            assert [m.body for m in seen] == [f"r{i}".encode() for i in range(10)]
            assert not any(m.redelivered for m in seen)
            for m in seen[:4]:
                await m.ack()
            # the ack frames must reach the broker before the close
            await fch.declare_queue(qname, passive=True)
            if close == "channel":
                await fch.close()
            await first.close()

            sch = await pub.channel()
            sq = await sch.get_queue(qname)
            again = []
            async with sq.iterator() as it:
                async for msg in it:
                    again.append((msg.body, msg.redelivered))
                    await msg.ack()
                    if len(again) == 6:
                        break
            assert again == [(f"r{i}".encode(), True) for i in range(4, 10)]
            await asyncio.sleep(0.2)
            assert await sq.get(fail=False) is None

    run(main())


def test_aiopika_prefetch_limit_is_respected(broker):
    """With basic.qos prefetch_count=3 a consumer holds at most 3 unacked deliveries; each
    ack lets exactly one more in."""
    async def main():
        conn = await aio_pika.connect(url(broker))
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            q = await ch.declare_queue("aio-qos", durable=True)
            for i in range(20):
                await ch.default_exchange.publish(persistent(f"q{i}".encode()), routing_key="aio-qos")
            cch = await conn.channel()
            await cch.set_qos(prefetch_count=3)
            cq = await cch.get_queue("aio-qos")
            inbox: asyncio.Queue = asyncio.Queue()
            tag = await cq.consume(inbox.put)

            async def settle():
                await asyncio.sleep(0.5)   # long enough for more deliveries, were there any
                return [inbox.get_nowait() for _ in range(inbox.qsize())]

            held = await settle()
            assert [m.body for m in held] == [b"q0", b"q1", b"q2"]
            await held[0].ack()
            more = await settle()
            assert [m.body for m in more] == [b"q3"]
            for m in held[1:] + more:
                await m.ack()
            more = await settle()
            assert [m.body for m in more] == [b"q4", b"q5", b"q6"]
            await cq.cancel(tag)
            await cch.close()
            # the 3 unacked went back: 13 unsent + 3 requeued
            declared = await ch.declare_queue("aio-qos", passive=True)
            assert declared.declaration_result.message_count == 16

    run(main())


def test_aiopika_transactions_commit_delivers_rollback_never_does(broker):
    """tx.commit makes the channel's publishes visible (in order); tx.rollback discards
    them: they are never delivered."""
    async def main():
        conn = await aio_pika.connect(url(broker))
        async with conn:
            spy = await conn.channel()
            sq = await spy.declare_queue("aio-tx", durable=True)
            ch = await conn.channel(publisher_confirms=False)
            tx = ch.transaction()
            await tx.select()
            for i in range(5):
                await ch.default_exchange.publish(persistent(f"c{i}".encode()), routing_key="aio-tx")
            await asyncio.sleep(0.2)
            assert await sq.get(fail=False) is None      # not before the commit
            await tx.commit()
            for i in range(5):
                await ch.default_exchange.publish(persistent(f"rb{i}".encode()), routing_key="aio-tx")
            await tx.rollback()
            await ch.default_exchange.publish(persistent(b"c5"), routing_key="aio-tx")
            await tx.commit()
            # the context manager form: commits on a clean exit
            async with ch.transaction():
                await ch.default_exchange.publish(persistent(b"c6"), routing_key="aio-tx")
            got = await get_n(sq, 7)
            assert [m.body for m in got] == [f"c{i}".encode() for i in range(7)]
            await asyncio.sleep(0.3)
            assert await sq.get(fail=False) is None      # nothing rolled back ever shows up

    run(main())


def test_aiopika_committed_transactions_survive_kill_9_rolled_back_never_appear(broker):
    """Transactions across a crash: batches whose tx.commit returned are all there after
    SIGKILL and restart, in order; rolled-back batches and the batch still open at the
    kill are never delivered."""
    async def publish_phase():
        conn = await aio_pika.connect(url(broker))
        ch = await conn.channel(publisher_confirms=False)
        await ch.declare_queue("aio-txd", durable=True)
        tx = ch.transaction()
        await tx.select()
        for batch in range(10):
            for i in range(20):
                await ch.default_exchange.publish(persistent(f"b{batch}-{i}".encode()),
                                                  routing_key="aio-txd")
            if batch % 2 == 0:
                await tx.commit()
            else:
                await tx.rollback()
        for i in range(20):
            await ch.default_exchange.publish(persistent(f"open-{i}".encode()),
                                              routing_key="aio-txd")
        await asyncio.sleep(0.2)     # the open batch reached the broker, uncommitted
        broker.kill()
        try:
            await asyncio.wait_for(conn.close(), 5)
        except Exception:
            pass

    run(publish_phase())
    broker.restart()

    async def check():
        conn = await aio_pika.connect(url(broker))
        async with conn:
            ch = await conn.channel()
            q = await ch.declare_queue("aio-txd", durable=True)
            assert q.declaration_result.message_count == 100
            got = await get_n(q, 100)
            assert [m.body for m in got] == [f"b{b}-{i}".encode()
                                             for b in range(0, 10, 2) for i in range(20)]
            assert await q.get(fail=False) is None

    run(check())


def test_aiopika_routing_topic_headers_exchange_to_exchange_and_returns(broker):
    """aio-pika's declare/bind API: a durable topic exchange, a headers exchange (x-match
    any), an exchange-to-exchange binding, and a mandatory unroutable publish that comes
    back through aio-pika's return callback (312 NO_ROUTE) and settles its confirmation."""
    async def main():
        conn = await aio_pika.connect(url(broker))
        async with conn:
            ch = await conn.channel(publisher_confirms=True, on_return_raises=False)
            returned = []
            ch.return_callbacks.add(lambda _ch, m: returned.append(m))
            topic = await ch.declare_exchange("aio-topic", aio_pika.ExchangeType.TOPIC, durable=True)
            headers = await ch.declare_exchange("aio-headers", aio_pika.ExchangeType.HEADERS)
            front = await ch.declare_exchange("aio-front", aio_pika.ExchangeType.FANOUT)
            await topic.bind(front)                    # aio-front -> aio-topic
            qa = await ch.declare_queue("aio-orange", durable=True)
            qb = await ch.declare_queue("aio-lazy", durable=True)
            qh = await ch.declare_queue("aio-hdr")
            await qa.bind(topic, "*.orange.*")
            await qb.bind(topic, "lazy.#")
            await qh.bind(headers, arguments={"x-match": "any", "color": "red", "size": 5})
            for rk in ("quick.orange.rabbit", "lazy.brown.fox", "lazy.orange.elephant", "x.y"):
                await topic.publish(persistent(rk.encode()), routing_key=rk)
            await front.publish(persistent(b"via-front"), routing_key="lazy.via.front")
            for h in ({"color": "red"}, {"size": 5}, {"color": "blue", "size": 6}, {}):
                await headers.publish(aio_pika.Message(repr(h).encode(), headers=h), routing_key="")
            r = await ch.default_exchange.publish(
                aio_pika.Message(b"nobody", message_id="ret-1"), routing_key="aio-no-queue",
                mandatory=True)
            # aiormq settles the confirmation of a returned publish with the returned
            # message (basic.return arrives before its basic.ack, as the spec orders).
            assert isinstance(r.delivery, aiormq.spec.Basic.Return), r
            assert r.delivery.reply_code == 312 and r.body == b"nobody"
            assert sorted(m.body for m in await get_n(qa, 2)) == [b"lazy.orange.elephant",
                                                                  b"quick.orange.rabbit"]
            assert sorted(m.body for m in await get_n(qb, 3)) == [b"lazy.brown.fox",
                                                                  b"lazy.orange.elephant",
                                                                  b"via-front"]
            assert [m.body for m in await get_n(qh, 2)] == [b"{'color': 'red'}", b"{'size': 5}"]
            await asyncio.sleep(0.3)
            for q in (qa, qb, qh):
                assert await q.get(fail=False) is None
            # aio-pika publishes with mandatory=True by default, so the unroutable topic
            # and headers publishes come back too.
            deadline = time.monotonic() + 5
            while len(returned) < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert sorted(m.body for m in returned) == sorted([
                b"x.y", b"{'color': 'blue', 'size': 6}", b"{}", b"nobody"])
            assert [m.message_id for m in returned if m.body == b"nobody"] == ["ret-1"]

    run(main())


def test_aiopika_channel_exceptions_carry_reply_codes(broker):
    """Passive declare of a missing queue: channel.close 404 NOT_FOUND, raised by aiormq as
    ChannelNotFoundEntity; redeclaring with another durability: 406 as
    ChannelPreconditionFailed; the connection stays usable."""
    async def main():
        conn = await aio_pika.connect(url(broker))
        async with conn:
            ch = await conn.channel()
            with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity) as e:
                await ch.declare_queue("aio-missing", passive=True)
            assert "NOT_FOUND" in str(e.value)
            ch = await conn.channel()
            with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
                await ch.get_exchange("aio-missing-x", ensure=True)
            ch = await conn.channel()
            await ch.declare_queue("aio-dur", durable=True)
            with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed) as e:
                await ch.declare_queue("aio-dur", durable=False)
            assert "PRECONDITION_FAILED" in str(e.value)
            ch = await conn.channel()          # same connection, new channel: still fine
            q = await ch.declare_queue("aio-dur", durable=True)
            assert q.declaration_result.message_count == 0

    run(main())


# ----------------------------------------------------------------------------- kombu

def kombu_conn(b, **kw):
    from kombu import Connection
    return Connection(f"amqp://guest:guest@127.0.0.1:{b.amqp_port}//", connect_timeout=10, **kw)


def test_kombu_producer_consumer_over_a_durable_exchange_and_queue(broker):
    """kombu Producer (publisher confirms, persistent, json) to a durable direct exchange;
    a Consumer on the bound durable queue receives every message once, in order; acked
    messages are gone, and the definitions are durable."""
    from kombu import Consumer, Exchange, Producer, Queue

    ex = Exchange("k-ex", type="direct", durable=True)
    q = Queue("k-q", exchange=ex, routing_key="k-rk", durable=True)
    n = 200
    with kombu_conn(broker, transport_options={"confirm_publish": True}) as conn:
        producer = Producer(conn.channel(), exchange=ex, serializer="json")
        for i in range(n):
            producer.publish({"i": i, "id": f"k-{i}"}, routing_key="k-rk", declare=[q],
                             delivery_mode=2, retry=False)
        got = []

        def on_message(body, message):
            got.append((body, message.delivery_info["redelivered"],
                        message.properties.get("delivery_mode")))
            message.ack()

        with Consumer(conn.channel(), queues=[q], callbacks=[on_message], accept=["json"]):
            deadline = time.monotonic() + 20
            while len(got) < n and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass
        assert [b["i"] for b, _, _ in got] == list(range(n))
        assert not any(r for _, r, _ in got)
        assert all(dm == 2 for _, _, dm in got)
        ch = conn.channel()
        name, count, consumers = ch.queue_declare("k-q", passive=True)
        assert (name, count, consumers) == ("k-q", 0, 0)
        ch.exchange_declare("k-ex", "direct", passive=True)
        ch.close()


def test_kombu_simple_queue_put_get_ack_and_requeue(broker):
    """SimpleQueue put/get with ack; message.requeue() (basic.reject requeue=true) brings
    the message back with redelivered=True; every message is received once more at most.
    (SimpleQueue's consumer has no prefetch limit, so the later messages may already be in
    kombu's buffer ahead of the requeued one, with RabbitMQ as well.)"""
    with kombu_conn(broker) as conn:
        sq = conn.SimpleQueue("k-simple")
        for i in range(3):
            sq.put({"n": i})
        m = sq.get(block=True, timeout=10)
        assert m.payload == {"n": 0} and not m.delivery_info["redelivered"]
        m.ack()
        m = sq.get(block=True, timeout=10)
        assert m.payload == {"n": 1} and not m.delivery_info["redelivered"]
        m.requeue()
        rest = []
        for _ in range(2):
            m = sq.get(block=True, timeout=10)
            rest.append((m.payload["n"], m.delivery_info["redelivered"]))
            m.ack()
        assert sorted(rest) == [(1, True), (2, False)]
        with pytest.raises(sq.Empty):
            sq.get(block=True, timeout=0.5)
        sq.close()
    with kombu_conn(broker) as conn:       # all acked: nothing left
        ch = conn.channel()
        assert ch.queue_declare("k-simple", passive=True).message_count == 0
        ch.close()


# ----------------------------------------------------------------------------- Celery

class CeleryWorker:
    """One `celery worker` subprocess (solo pool) on celery_e2e_app; stopped by its PID."""

    def __init__(self, broker, results: Path, log: Path, acks_late: bool = False):
        env = dict(os.environ)
        env.update(ARCTERN_CELERY_BROKER=f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}//",
                   ARCTERN_CELERY_RESULTS=str(results),
                   ARCTERN_CELERY_ACKS_LATE="1" if acks_late else "0",
                   PYTHONPATH=str(HERE) + os.pathsep + env.get("PYTHONPATH", ""))
        self.log = log
        out = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_e2e_app", "worker", "--pool=solo",
             "-c", "1", "--without-heartbeat", "--without-gossip", "--without-mingle",
             "-l", os.environ.get("ARCTERN_CELERY_LOGLEVEL", "info"), "-n", f"w{uuid.uuid4().hex[:6]}@localhost"],
            cwd=str(HERE), env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)

    def stop(self):
        """SIGKILL: the solo pool has no child processes, and a warm shutdown (SIGTERM)
        waits for the worker's event loop to wake up, up to 10 s."""
        self.kill(signal.SIGKILL)

    def log_tail(self, n=40):
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture
def celery_env(broker, tmp_path, monkeypatch):
    """start_worker(acks_late) -> CeleryWorker, and a Celery app for this broker in this
    process (make_app(acks_late)) to send tasks with; every worker is stopped (by PID) and
    every app closed at teardown."""
    results = tmp_path / "celery-results"
    results.mkdir()
    monkeypatch.syspath_prepend(str(HERE))
    import celery_e2e_app as mod
    workers: list[CeleryWorker] = []
    apps = []

    def start_worker(acks_late=False) -> CeleryWorker:
        w = CeleryWorker(broker, results, tmp_path / f"worker{len(workers)}.log", acks_late)
        workers.append(w)
        return w

    def make_app(acks_late=False):
        app = mod.make_app(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}//", str(results),
                           acks_late)
        apps.append(app)
        return app

    yield make_app, start_worker
    for w in workers:
        w.stop()
    for app in apps:
        app.close()


def test_celery_worker_runs_tasks_with_arctern_as_broker(celery_env):
    """A Celery worker consuming from Arctern runs tasks sent by this process; their
    results come back (file-system result backend)."""
    make_app, start_worker = celery_env
    app = make_app()
    w = start_worker()
    try:
        results = [app.send_task("celery_e2e_app.add", (i, i * 10)) for i in range(20)]
        assert [r.get(timeout=60) for r in results] == [i * 11 for i in range(20)]
        assert all(r.successful() for r in results)
    except Exception:
        print(w.log_tail())
        raise


def test_celery_acks_late_task_runs_again_after_worker_sigkill(celery_env, tmp_path):
    """task_acks_late=True: the message is acked only after the task ran. A worker killed
    with SIGKILL mid-task never acked it, so the broker redelivers it (redelivered=True)
    to the next worker, which runs it to completion."""
    import celery_e2e_app as mod
    make_app, start_worker = celery_env
    app = make_app(acks_late=True)
    journal_path = tmp_path / "journal.txt"
    w1 = start_worker(acks_late=True)
    res = app.send_task("celery_e2e_app.journal", (str(journal_path), "job-1", 120))
    deadline = time.monotonic() + 60
    while not mod.lines(journal_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    first = mod.lines(journal_path)
    assert first and first[0].startswith("start job-1 "), w1.log_tail()
    assert first[0].split()[3] == "0"          # first delivery: not redelivered
    w1.kill(signal.SIGKILL)
    w2 = start_worker(acks_late=True)
    try:
        assert res.get(timeout=60) == "job-1"
    except Exception:
        print(w2.log_tail())
        raise
    entries = mod.lines(journal_path)
    starts = [e.split() for e in entries if e.startswith("start")]
    dones = [e.split() for e in entries if e.startswith("done")]
    assert len(starts) == 2, entries
    assert starts[0][2] == str(w1.proc.pid) and starts[1][2] == str(w2.proc.pid)
    assert starts[1][3] == "1", "the second run must be a redelivery"
    assert len(dones) == 1 and dones[0][2] == str(w2.proc.pid)


# ----------------------------------------------------------------------------- crash test

CRASH_TOTAL = 100_000
CRASH_PUBLISHERS = 4
CRASH_WINDOW = 256          # unconfirmed publishes in flight per publisher
CRASH_PAD = b"." * 1000     # bodies of ~1 KiB


async def confirmed_publishing(b, qname, ids, confirmed: set, failed: list, stop_at=None):
    """CRASH_PUBLISHERS connections with confirms publish the ids taken from `ids` (a shared
    iterator), each with up to CRASH_WINDOW publishes in flight; an id goes into `confirmed`
    only once the broker acked it. Publishers stop when `ids` is exhausted or their
    connection fails (the broker was killed). `stop_at` (a callable) is polled to kill."""
    async def publisher():
        try:
            conn = await aio_pika.connect(url(b), timeout=10)
        except Exception as e:           # killed before we even connected
            failed.append(repr(e))
            return
        try:
            ch = await conn.channel(publisher_confirms=True)
            sem = asyncio.Semaphore(CRASH_WINDOW)
            pending: set[asyncio.Task] = set()
            broken = asyncio.Event()

            async def one(i):
                try:
                    r = await ch.default_exchange.publish(
                        persistent(b"%08d" % i + CRASH_PAD, message_id=str(i)),
                        routing_key=qname, timeout=30)
                    if isinstance(r, aiormq.spec.Basic.Ack):
                        confirmed.add(i)
                except Exception as e:
                    failed.append(repr(e))
                    broken.set()
                finally:
                    sem.release()

            for i in ids:
                await sem.acquire()
                if broken.is_set():
                    sem.release()
                    break
                t = asyncio.create_task(one(i))
                pending.add(t)
                t.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait(pending, timeout=60)
        finally:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:
                pass

    tasks = [asyncio.create_task(publisher()) for _ in range(CRASH_PUBLISHERS)]
    if stop_at is not None:
        while not all(t.done() for t in tasks):
            if stop_at():
                break
            await asyncio.sleep(0.005)
    await asyncio.wait(tasks, timeout=120)
    for t in tasks:
        assert t.done(), "a publisher hung"


class Counter:
    """The ids to publish, 0..total-1, handed out once each; `taken` counts them."""

    def __init__(self, total):
        self.total = total
        self.taken = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.taken >= self.total:
            raise StopIteration
        self.taken += 1
        return self.taken - 1


@pytest.mark.timeout(300)
def test_kill_9_during_100k_confirmed_publishes_loses_and_duplicates_nothing(broker):
    """The crash test at scale: 100k persistent ~1 KiB messages with unique ids, published
    with confirms by 4 aio-pika connections (256 in flight each). The broker is SIGKILLed
    once a random 20-80% of the ids were handed to publishers; after a restart the rest
    are published (each id is published exactly once over both broker lives). Then every
    confirmed id is in the queue exactly once, no id appears twice, and nothing that was
    never published appears."""
    qname = "crash-100k"
    kill_after = int(CRASH_TOTAL * random.uniform(0.2, 0.8))
    ids = Counter(CRASH_TOTAL)
    confirmed: set[int] = set()
    failed: list[str] = []

    def kill_when_due():
        if ids.taken >= kill_after:
            broker.kill()
            return True
        return False

    async def phase1():
        conn = await aio_pika.connect(url(broker))
        async with conn:
            ch = await conn.channel()
            await ch.declare_queue(qname, durable=True)
        await confirmed_publishing(broker, qname, ids, confirmed, failed, stop_at=kill_when_due)

    run(phase1(), timeout=200)
    assert not broker.running()
    attempted_1 = ids.taken
    confirmed_1 = len(confirmed)
    print(f"killed after {attempted_1} ids handed out, {confirmed_1} confirmed "
          f"({len(failed)} publishes failed)")
    assert confirmed_1 > 1000, "publishers barely ran before the kill"
    assert failed, "the kill interrupted no publish"

    broker.restart()
    confirmed_2_before = set(confirmed)
    failed_2: list[str] = []
    run(confirmed_publishing(broker, qname, ids, confirmed, failed_2), timeout=200)
    assert ids.taken == CRASH_TOTAL
    assert not failed_2, failed_2[:5]
    # with the broker up, every id of the second life was confirmed
    assert confirmed - confirmed_2_before == set(range(attempted_1, CRASH_TOTAL))

    async def consume_all():
        conn = await aio_pika.connect(url(broker))
        async with conn:
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=1000)
            q = await ch.declare_queue(qname, durable=True)
            ready = q.declaration_result.message_count
            seen: list[int] = []
            if ready:
                async with q.iterator(no_ack=True) as it:
                    async for m in it:
                        i = int(m.body[:8])
                        assert m.body == b"%08d" % i + CRASH_PAD
                        assert m.message_id == str(i)
                        seen.append(i)
                        if len(seen) == ready:
                            break
            await asyncio.sleep(0.5)
            assert await q.get(no_ack=True, fail=False) is None, "more than the queue's count"
            return ready, seen

    ready, seen = run(consume_all(), timeout=200)
    print(f"after restart: {ready} messages in the queue")
    assert len(seen) == ready
    dups = len(seen) - len(set(seen))
    assert dups == 0, f"{dups} duplicated messages"
    missing = confirmed - set(seen)
    assert not missing, f"{len(missing)} confirmed messages lost, e.g. {sorted(missing)[:5]}"
    assert set(seen) <= set(range(CRASH_TOTAL))
    # everything confirmed is there; unconfirmed ids of the first life may or may not be
    assert len(seen) >= len(confirmed)
