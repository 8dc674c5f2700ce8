//! Idempotent producers (KIP-98): per partition, each producer id's epoch and the
//! sequence numbers of its last five batches, so a retried batch is recognised and
//! acknowledged at its original offsets instead of being written twice, and a gap in the
//! sequence is refused.
//!
//! The state is derived from the log alone (every batch header carries producer id, epoch
//! and base sequence), so a follower builds the same state from what it replicates, a new
//! leader has it at once, and a restart rebuilds it by scanning the stored batch headers.

use std::collections::{HashMap, VecDeque};

use arctern_storage::BatchHeader;

/// Kafka keeps the metadata of this many batches per producer (the most a producer may
/// have in flight with idempotence: `max.in.flight.requests.per.connection` <= 5).
pub const BATCHES_KEPT: usize = 5;

/// `producer_id` of a batch written without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    first_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    /// Local time of the last batch written, for `producer.id.expiration.ms`.
    last_write_ms: i64,
    /// Max timestamp of the last batch (DescribeProducers' `last_timestamp`).
    last_timestamp: i64,
}

/// One producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
}

/// What the leader should do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Write it (not idempotent, or the next in sequence).
    Append,
    /// A retry of a batch already in the log at these offsets: acknowledge, do not write.
    Duplicate { first_offset: i64, last_offset: i64 },
    /// OUT_OF_ORDER_SEQUENCE_NUMBER: a sequence gap (an earlier batch was lost).
    OutOfOrder { expected: i32, got: i32 },
    /// INVALID_PRODUCER_EPOCH: a zombie producer with an older epoch.
    StaleEpoch { current: i16, got: i16 },
}

#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

/// The last sequence of a batch, wrapping at i32::MAX as Kafka's sequences do.
fn last_sequence(h: &BatchHeader) -> i32 {
    let last = i64::from(h.base_sequence) + i64::from(h.last_offset_delta);
    if last > i64::from(i32::MAX) {
        (last - i64::from(i32::MAX) - 1) as i32
    } else {
        last as i32
    }
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

impl ProducerStates {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Kafka's checks, in its order: epoch fencing, then duplicates, then the sequence.
    pub fn check(&self, h: &BatchHeader) -> SequenceCheck {
        if h.producer_id == NO_PRODUCER_ID {
            return SequenceCheck::Append;
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // Unknown producer (new, or its batches were removed by retention): Kafka
            // accepts any sequence.
            return SequenceCheck::Append;
        };
        if h.producer_epoch < entry.epoch {
            return SequenceCheck::StaleEpoch {
                current: entry.epoch,
                got: h.producer_epoch,
            };
        }
        if h.producer_epoch > entry.epoch {
            // A bumped epoch restarts the sequence at 0.
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder {
                    expected: 0,
                    got: h.base_sequence,
                }
            };
        }
        let last_seq = last_sequence(h);
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return SequenceCheck::Duplicate {
                first_offset: dup.first_offset,
                last_offset: dup.last_offset,
            };
        }
        match entry.batches.back() {
            Some(last) if next_sequence(last.last_seq) != h.base_sequence => {
                SequenceCheck::OutOfOrder {
                    expected: next_sequence(last.last_seq),
                    got: h.base_sequence,
                }
            }
            _ => SequenceCheck::Append,
        }
    }

    /// Records a batch now in the log (`h` carries its assigned base offset).
    pub fn record(&mut self, h: &BatchHeader, now_ms: i64) {
        if h.producer_id == NO_PRODUCER_ID || h.is_control() {
            return;
        }
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_sequence(h),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
        };
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::with_capacity(BATCHES_KEPT),
                last_write_ms: now_ms,
                last_timestamp: h.max_timestamp,
            });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_KEPT {
            entry.batches.pop_front();
        }
        entry.batches.push_back(meta);
        entry.last_write_ms = now_ms;
        entry.last_timestamp = h.max_timestamp;
    }

    /// The producers tracked, ordered by id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(id, e)| ActiveProducer {
                producer_id: *id,
                producer_epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_timestamp,
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Forgets producers silent for longer than `producer.id.expiration.ms`.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_write_ms) <= expiration_ms);
        before - self.producers.len()
    }

    pub fn clear(&mut self) {
        self.producers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            size: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn in_sequence_batches_append_and_a_retry_is_a_duplicate() {
        let mut s = ProducerStates::default();
        let b0 = batch(7, 0, 0, 3, 10);
        assert_eq!(s.check(&b0), SequenceCheck::Append);
        s.record(&b0, 0);
        let b1 = batch(7, 0, 3, 2, 13);
        assert_eq!(s.check(&b1), SequenceCheck::Append);
        s.record(&b1, 0);
        // The retry of the first batch arrives with base offset unset.
        assert_eq!(
            s.check(&batch(7, 0, 0, 3, 0)),
            SequenceCheck::Duplicate {
                first_offset: 10,
                last_offset: 12
            }
        );
    }

    #[test]
    fn a_gap_is_out_of_order() {
        let mut s = ProducerStates::default();
        s.record(&batch(7, 0, 0, 3, 0), 0);
        assert_eq!(
            s.check(&batch(7, 0, 5, 1, 0)),
            SequenceCheck::OutOfOrder {
                expected: 3,
                got: 5
            }
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        for i in 0..6 {
            s.record(&batch(7, 0, i, 1, i64::from(i)), 0);
        }
        // The first batch fell out of the window: no longer a duplicate, and out of order.
        assert!(matches!(
            s.check(&batch(7, 0, 0, 1, 0)),
            SequenceCheck::OutOfOrder { .. }
        ));
        assert!(matches!(
            s.check(&batch(7, 0, 1, 1, 0)),
            SequenceCheck::Duplicate {
                first_offset: 1,
                ..
            }
        ));
    }

    #[test]
    fn an_older_epoch_is_fenced_and_a_new_epoch_restarts_at_zero() {
        let mut s = ProducerStates::default();
        s.record(&batch(7, 2, 0, 1, 0), 0);
        assert_eq!(
            s.check(&batch(7, 1, 1, 1, 0)),
            SequenceCheck::StaleEpoch { current: 2, got: 1 }
        );
        assert!(matches!(
            s.check(&batch(7, 3, 4, 1, 0)),
            SequenceCheck::OutOfOrder { expected: 0, .. }
        ));
        assert_eq!(s.check(&batch(7, 3, 0, 1, 0)), SequenceCheck::Append);
    }

    #[test]
    fn unknown_producers_and_plain_batches_are_accepted() {
        let s = ProducerStates::default();
        assert_eq!(s.check(&batch(9, 0, 42, 1, 0)), SequenceCheck::Append);
        assert_eq!(s.check(&batch(-1, -1, -1, 1, 0)), SequenceCheck::Append);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut s = ProducerStates::default();
        s.record(&batch(7, 0, i32::MAX - 1, 2, 0), 0);
        assert_eq!(s.check(&batch(7, 0, 0, 1, 2)), SequenceCheck::Append);
    }

    #[test]
    fn silent_producers_expire() {
        let mut s = ProducerStates::default();
        s.record(&batch(1, 0, 0, 1, 0), 1_000);
        s.record(&batch(2, 0, 0, 1, 1), 5_000);
        assert_eq!(s.expire(6_000, 2_000), 1);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn active_producers_report_their_last_batch() {
        let mut s = ProducerStates::default();
        let mut b = batch(9, 1, 0, 3, 0);
        b.max_timestamp = 1_700;
        s.record(&b, 10);
        let mut b = batch(9, 1, 3, 2, 3);
        b.max_timestamp = 1_800;
        s.record(&b, 20);
        s.record(&batch(4, 0, 0, 1, 5), 30);
        s.record(&batch(NO_PRODUCER_ID, -1, -1, 1, 6), 40);
        let active = s.active();
        assert_eq!(
            active,
            vec![
                ActiveProducer {
                    producer_id: 4,
                    producer_epoch: 0,
                    last_sequence: 0,
                    last_timestamp: 0
                },
                ActiveProducer {
                    producer_id: 9,
                    producer_epoch: 1,
                    last_sequence: 4,
                    last_timestamp: 1_800
                },
            ]
        );
    }
}
