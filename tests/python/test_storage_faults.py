"""Storage faults on a stopped broker (issue 21): one flipped bit in a stored batch's base
offset, a field Kafka's batch CRC does not cover. A stock consumer (confluent-kafka) must
never skip acknowledged records: it gets every record before the damaged batch and then
nothing (the broker answers KAFKA_STORAGE_ERROR for that range, which the client retries),
and the broker logs the partition, the file and the position.

Negative control: with `storage.verify.reads = false` (batches served as Kafka serves them,
CRC only) the same flip makes the consumer skip records silently, as issue 21 first saw."""
from __future__ import annotations

import struct
import time

import kclients as kc

BATCHES, PER_BATCH = 48, 20


def _stored_log_with_a_flipped_base_offset(b, topic: str) -> tuple[int, str]:
    """Writes BATCHES acknowledged batches, stops the broker, flips one bit in the base
    offset of a batch inside a sealed segment; returns that batch's base offset and file."""
    kc.create_topic(b.bootstrap, topic, config={"segment.bytes": "16384"})
    for i in range(BATCHES):
        msgs = [kc.Msg(b"r%05d" % (i * PER_BATCH + k) + b"." * 80) for k in range(PER_BATCH)]
        kc.produce_confluent(b.bootstrap, topic, msgs, conf={"linger.ms": 50})
    b.stop()
    segments = sorted((b.data_dir / f"{topic}-0").glob("*.log"))
    assert len(segments) >= 4, f"expected several sealed segments, got {segments}"
    seg = segments[2]
    data = bytearray(seg.read_bytes())
    pos = 0
    for _ in range(3):                       # the 4th batch of the segment
        pos += 12 + struct.unpack_from(">i", data, pos + 8)[0]
    base = struct.unpack_from(">q", data, pos)[0]
    data[pos + 6] ^= 0x01                     # base offset +/- 256
    seg.write_bytes(bytes(data))
    b.start()
    return base, seg.name


def _consume_for(bootstrap: str, topic: str, seconds: float) -> tuple[list[int], bool]:
    """Offsets a confluent-kafka consumer delivers from the beginning within `seconds`
    (or until the end of the partition); whether it reached the end."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "storage-faults",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "fetch.wait.max.ms": 100, "log_level": 0})
    offsets: list[int] = []
    eof = False
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not eof:
            for m in c.consume(num_messages=500, timeout=0.5):
                if m.error():
                    eof |= m.error().code() == KafkaError._PARTITION_EOF
                    continue
                offsets.append(m.offset())
    finally:
        c.close()
    return offsets, eof


def test_a_flipped_base_offset_stops_the_consumer_before_it_and_is_logged(
        broker_factory, topic_name):
    b = broker_factory()
    base, seg = _stored_log_with_a_flipped_base_offset(b, topic_name)
    offsets, eof = _consume_for(b.bootstrap, topic_name, 8)
    assert not eof, "the consumer reached the end: the damaged batch was served"
    assert offsets == list(range(base)), \
        f"expected offsets 0..{base - 1} and nothing more, got {len(offsets)} " \
        f"(first gap/extra: {next((o for i, o in enumerate(offsets) if o != i), None)})"
    log = b.log_path.read_text(errors="replace")
    line = next((ln for ln in log.splitlines() if "stored data failed verification" in ln), None)
    assert line is not None, "no log line for the corrupt batch"
    assert topic_name in line and seg in line and "base offset" in line, line


def test_negative_control_without_the_checks_the_consumer_skips_silently(
        broker_factory, topic_name):
    b = broker_factory(config={"storage.verify.reads": False})
    base, _ = _stored_log_with_a_flipped_base_offset(b, topic_name)
    offsets, eof = _consume_for(b.bootstrap, topic_name, 20)
    assert eof, f"the consumer did not reach the end ({len(offsets)} records)"
    missing = sorted(set(range(BATCHES * PER_BATCH)) - set(offsets))
    assert missing, "no record skipped: the flip did not reproduce the silent skip"
    assert missing[0] == base, f"skipped from {missing[0]}, damaged batch at {base}"
