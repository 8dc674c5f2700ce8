"""The acknowledged-records checker shared by the crash tests (one broker, kill -9) and the
replication tests (three brokers, leader changes).

Records are numbered: record i has the value `value_of(i)` (its index in 9 digits, then
padding), so a value read back says which record it is. A test keeps `acked`: index ->
(partition, offset) from the delivery reports, and after the run reads every partition
back and asks `check_topic` what is wrong with it. Kafka's guarantees for acks=all, no
idempotence, retries on:
  * every acknowledged record is in the log, at the offset its ack reported, byte for byte;
  * offsets are dense from the log start to the high watermark, and the log holds nothing
    that was not sent;
  * a batch whose ack was lost (broker killed, leader changed) is retried and may be stored
    twice, so duplicates are allowed, but ONLY for records not yet acknowledged at the first
    disruption (a record acked before it was never retried: exactly once);
  * with one request in flight retries do not reorder: per partition, the first occurrences
    appear in send order (with more in flight Kafka allows reordering; check_order=False).
The checker reports instead of asserting, so a negative-control test can assert that it
DOES see a loss.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import kclients as kc

PAD = bytes(range(48, 122)) * 2


def value_of(i: int) -> bytes:
    return b"%09d|" % i + PAD[i % 37:(i % 37) + 40 + i % 23]


def index_of(v: bytes | None) -> int | None:
    """The record index a value encodes, or None for a value not made by value_of."""
    if v is None or len(v) < 10 or v[9:10] != b"|" or not v[:9].isdigit():
        return None
    i = int(v[:9])
    return i if v == value_of(i) else None


@dataclass
class PartitionCheck:
    partition: int
    log_start: int
    high_watermark: int
    records: int                                   # records read back
    lost: list[int] = field(default_factory=list)  # acked, not in the log at all
    misplaced: list[tuple] = field(default_factory=list)  # (index, acked offset, found there)
    foreign: list[tuple] = field(default_factory=list)    # (offset, value prefix)
    wrong_partition: list[tuple] = field(default_factory=list)
    not_dense: str | None = None
    acked_early_duplicated: dict = field(default_factory=dict)   # index -> copies
    reordered_at: int | None = None                # position in first-occurrence order
    duplicates: dict = field(default_factory=dict)  # index -> copies (all)

    @property
    def problems(self) -> list[str]:
        p, out = self.partition, []
        if self.not_dense:
            out.append(f"p{p}: {self.not_dense}")
        if self.lost:
            out.append(f"p{p}: {len(self.lost)} acknowledged records lost, e.g. {self.lost[:5]}")
        if self.misplaced:
            out.append(f"p{p}: {len(self.misplaced)} acknowledged records not at their acked "
                       f"offset, e.g. (record, acked offset, record found there): "
                       f"{self.misplaced[:5]}")
        if self.foreign:
            out.append(f"p{p}: {len(self.foreign)} records we never sent, e.g. {self.foreign[:3]}")
        if self.wrong_partition:
            out.append(f"p{p}: records in the wrong partition: {self.wrong_partition[:5]}")
        if self.acked_early_duplicated:
            some = list(self.acked_early_duplicated.items())[:5]
            out.append(f"p{p}: {len(self.acked_early_duplicated)} records acked before the "
                       f"first disruption are stored more than once (never retried), e.g. {some}")
        if self.reordered_at is not None:
            out.append(f"p{p}: records reordered (first occurrences out of send order at "
                       f"position {self.reordered_at})")
        return out


@dataclass
class TopicCheck:
    partitions: list[PartitionCheck]
    report: dict

    @property
    def problems(self) -> list[str]:
        return [x for p in self.partitions for x in p.problems]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def lost(self) -> list[int]:
        return sorted(i for p in self.partitions for i in p.lost)

    def assert_ok(self, who: str = ""):
        probs = self.problems
        assert not probs, f"{who}acknowledged-records check failed:\n  " + "\n  ".join(probs) \
            + f"\nreport: {self.report}"


def check_partition(recs: list, part: int, acked: dict, sent, *, partitions: int = 1,
                    log_start: int = 0, high_watermark: int | None = None,
                    acked_early: set | None = None, check_order: bool = True) -> PartitionCheck:
    """recs: the partition read back from log_start to the high watermark (kclients.Rec).
    acked: index -> (partition, offset). sent: container of the indexes sent (range/set).
    acked_early: indexes acked before the first disruption (must be there exactly once)."""
    hw = high_watermark if high_watermark is not None else log_start + len(recs)
    c = PartitionCheck(part, log_start, hw, len(recs))
    offs = [r.offset for r in recs]
    if offs != list(range(log_start, log_start + len(recs))) or log_start + len(recs) != hw:
        first_gap = next((k for k, o in enumerate(offs) if o != log_start + k), None)
        c.not_dense = (f"offsets not dense from {log_start} to the high watermark {hw}: "
                       f"{len(recs)} records, first irregular at position {first_gap}")
    at: dict[int, int | None] = {}
    idx_seq: list[int] = []
    for r in recs:
        i = index_of(r.value)
        at[r.offset] = i
        if i is None or i not in sent:
            c.foreign.append((r.offset, (r.value or b"")[:30]))
            continue
        if i % partitions != part:
            c.wrong_partition.append((r.offset, i))
        idx_seq.append(i)
    counts = Counter(idx_seq)
    for i, (pp, off) in acked.items():
        if pp != part:
            continue
        if counts[i] == 0:
            c.lost.append(i)
        elif at.get(off) != i:
            c.misplaced.append((i, off, at.get(off)))
    c.lost.sort()
    c.misplaced.sort()
    for i in (acked_early or ()):
        if acked.get(i, (None,))[0] == part and counts[i] > 1:
            c.acked_early_duplicated[i] = counts[i]
    if check_order:
        seen, prev = set(), -1
        for k, i in enumerate(idx_seq):
            if i in seen:
                continue
            seen.add(i)
            if i < prev:
                c.reordered_at = k
                break
            prev = i
    c.duplicates = {i: n for i, n in counts.items() if n > 1}
    return c


def wait_high_watermark(bootstrap: str, topic: str, part: int, at_least: int,
                        timeout: float) -> int:
    """Poll the high watermark until it reaches `at_least` or `timeout` passes; returns the
    last one seen. Right after a leader change the new leader's high watermark may lag
    until its ISR has fetched (and a deposed leader may still answer for a moment)."""
    import time
    deadline = time.monotonic() + timeout
    hi = -1
    while True:
        try:
            hi = kc.watermarks(bootstrap, topic, part)[1]
        except Exception:               # noqa: BLE001 - leader moving
            pass
        if hi >= at_least or time.monotonic() >= deadline:
            return hi
        time.sleep(0.2)


def watermarks_while_leader_moves(bootstrap: str, topic: str, part: int,
                                  timeout: float = 30) -> tuple[int, int]:
    """Watermarks, retried while leadership moves (a preferred-leader election right after
    a restarted node catches up answers NOT_LEADER_OR_FOLLOWER for a moment, and clients
    retry it after a metadata refresh)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        try:
            return kc.watermarks(bootstrap, topic, part)
        except Exception:               # noqa: BLE001 - leader moving
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def read_partition(bootstrap: str, topic: str, part: int, timeout: float = 180,
                   wait_for: int | None = None, wait_timeout: float = 0):
    """(log start, high watermark, records below it) read with confluent-kafka, CRCs
    checked. Records appended after the watermarks were read (a load still running) are
    left out, so the result is a consistent prefix. With wait_for, first wait up to
    wait_timeout seconds for the high watermark to reach it."""
    if wait_for is not None and wait_timeout > 0:
        wait_high_watermark(bootstrap, topic, part, wait_for, wait_timeout)
    lo, hi = watermarks_while_leader_moves(bootstrap, topic, part)
    recs = kc.consume_confluent(bootstrap, topic, partition=part, n=None, start=lo,
                                timeout=timeout, conf={"check.crcs": True})
    return lo, hi, [r for r in recs if r.offset < hi]


def check_topic(bootstrap: str, topic: str, partitions: int, acked: dict, sent, *,
                acked_early: set | None = None, check_order: bool = True,
                failed: dict | None = None, timeout: float = 180,
                wait_hw: float = 0) -> TopicCheck:
    """Read every partition back through `bootstrap` and check it (see the module doc).
    wait_hw: first wait up to this many seconds for each partition's high watermark to pass
    its highest acknowledged offset (after a failover); a loss still shows after it."""
    checks = []
    for part in range(partitions):
        top = max((off for pp, off in acked.values() if pp == part), default=-1)
        lo, hi, recs = read_partition(bootstrap, topic, part, timeout,
                                      wait_for=top + 1, wait_timeout=wait_hw)
        checks.append(check_partition(recs, part, acked, sent, partitions=partitions,
                                      log_start=lo, high_watermark=hi,
                                      acked_early=acked_early, check_order=check_order))
    dups = Counter()
    for c in checks:
        dups.update(c.duplicates)
    report = {"partitions": partitions, "acked": len(acked),
              "failed": len(failed or {}), "records_in_log": sum(c.records for c in checks),
              "high_watermarks": [c.high_watermark for c in checks],
              "duplicated_records": len(dups), "extra_copies": sum(n - 1 for n in dups.values()),
              "lost": sum(len(c.lost) for c in checks)}
    if acked_early is not None:
        report["acked_before_first_disruption"] = len(acked_early)
    return TopicCheck(checks, report)
