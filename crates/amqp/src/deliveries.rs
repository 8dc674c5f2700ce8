//! One channel's delivery bookkeeping (sans-IO): delivery tags, the deliveries awaiting
//! ack/nack/reject, its consumers and their prefetch credit (`basic.qos`, per consumer
//! and per channel, in messages and in body bytes). What a delivery refers to in the
//! queue (`T`) and what a consumer is linked to (`C`) belong to the caller, which takes
//! deliveries from queues and settles them there.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::codes::AmqpError;

/// A delivery sent and not yet settled by the client.
#[derive(Debug)]
pub struct Delivery<T> {
    pub item: T,
    /// The consumer it went to (`None`: a `basic.get`).
    pub consumer: Option<String>,
    /// Body bytes (prefetch-size accounting).
    pub bytes: u64,
    pub delivered_at: Instant,
}

/// A consumer on the channel and its credit.
#[derive(Debug)]
pub struct Consumer<C> {
    pub no_ack: bool,
    /// Prefetch count and size in force when it started (0 = no limit).
    pub prefetch: u16,
    pub prefetch_size: u32,
    /// Its deliveries awaiting settlement.
    unacked: usize,
    pub link: C,
}

impl<C> Consumer<C> {
    pub fn unacked(&self) -> usize {
        self.unacked
    }
}

/// Most free prefetch a saturated consumer waits for before it is refilled.
pub const REFILL_MAX: usize = 64;

/// Free prefetch a saturated consumer waits for: a quarter of its prefetch, at most
/// `REFILL_MAX` (1, i.e. no waiting, for a prefetch below 8).
pub fn refill_threshold(prefetch: u16) -> usize {
    (usize::from(prefetch) / 4).clamp(1, REFILL_MAX)
}

#[derive(Debug)]
pub struct Deliveries<T, C> {
    next_tag: u64,
    unacked: BTreeMap<u64, Delivery<T>>,
    consumers: BTreeMap<String, Consumer<C>>,
    prefetch_consumer: u16,
    prefetch_global: u16,
    /// `basic.qos` prefetch-size (body bytes unacked), for new consumers and per channel.
    prefetch_size_consumer: u32,
    prefetch_size_global: u32,
}

impl<T, C> Default for Deliveries<T, C> {
    fn default() -> Self {
        Deliveries {
            next_tag: 0,
            unacked: BTreeMap::new(),
            consumers: BTreeMap::new(),
            prefetch_consumer: 0,
            prefetch_global: 0,
            prefetch_size_consumer: 0,
            prefetch_size_global: 0,
        }
    }
}

impl<T, C> Deliveries<T, C> {
    /// `basic.qos`: `global` limits the whole channel, otherwise consumers started after it.
    pub fn qos(&mut self, global: bool, count: u16, size: u32) {
        if global {
            self.prefetch_global = count;
            self.prefetch_size_global = size;
        } else {
            self.prefetch_consumer = count;
            self.prefetch_size_consumer = size;
        }
    }

    /// basic.qos prefetch counts: `(for new consumers, for the channel)`.
    pub fn prefetch_counts(&self) -> (u16, u16) {
        (self.prefetch_consumer, self.prefetch_global)
    }

    pub fn has_consumer(&self, tag: &str) -> bool {
        self.consumers.contains_key(tag)
    }

    /// Adds a consumer with the channel's current per-consumer prefetch (the caller
    /// checked the tag is free).
    pub fn add_consumer(&mut self, tag: String, no_ack: bool, link: C) {
        let consumer = Consumer {
            no_ack,
            prefetch: self.prefetch_consumer,
            prefetch_size: self.prefetch_size_consumer,
            unacked: 0,
            link,
        };
        self.consumers.insert(tag, consumer);
    }

    /// Removes a consumer; its deliveries stay unacked on the channel.
    pub fn remove_consumer(&mut self, tag: &str) -> Option<Consumer<C>> {
        self.consumers.remove(tag)
    }

    pub fn take_consumers(&mut self) -> BTreeMap<String, Consumer<C>> {
        std::mem::take(&mut self.consumers)
    }

    pub fn consumers(&self) -> impl Iterator<Item = (&String, &Consumer<C>)> {
        self.consumers.iter()
    }

    pub fn consumer_tags(&self) -> Vec<String> {
        self.consumers.keys().cloned().collect()
    }

    /// The consumer and how many body bytes it may be sent now: `None` when it has no
    /// credit (its own prefetch count or the channel's is used up), `u64::MAX` without
    /// limits.
    pub fn credit(&self, tag: &str) -> Option<(&Consumer<C>, Option<u64>)> {
        let cons = self.consumers.get(tag)?;
        if cons.no_ack {
            return Some((cons, Some(u64::MAX)));
        }
        let global = usize::from(self.prefetch_global);
        if (cons.prefetch > 0 && cons.unacked >= usize::from(cons.prefetch))
            || (global > 0 && self.unacked.len() >= global)
        {
            return Some((cons, None));
        }
        Some((cons, Some(self.prefetch_room(tag, cons.prefetch_size))))
    }

    /// Whether consumer `tag`, still holding most of its prefetch, should wait for more
    /// acks before it is sent more: its free prefetch count is below `refill_threshold`.
    /// With one ack per delivery this turns one write per ack into one per batch (the
    /// caller sends anyway once the client goes quiet, so nothing waits for long).
    pub fn should_wait_for_refill(&self, tag: &str) -> bool {
        let Some(cons) = self.consumers.get(tag) else {
            return false;
        };
        if cons.no_ack || cons.prefetch == 0 {
            return false;
        }
        let free = usize::from(cons.prefetch).saturating_sub(cons.unacked);
        free > 0 && free < refill_threshold(cons.prefetch)
    }

    /// Body bytes that may still go out to consumer `tag` under prefetch-size (its own
    /// limit and the channel's). A scope with nothing unacked takes any one message, so
    /// one larger than the limit is not stuck.
    fn prefetch_room(&self, tag: &str, consumer_limit: u32) -> u64 {
        let mut room = u64::MAX;
        if consumer_limit > 0 {
            let mine = self
                .unacked
                .values()
                .filter(|u| u.consumer.as_deref() == Some(tag));
            let (n, bytes) = mine.fold((0u64, 0u64), |(n, b), u| (n + 1, b + u.bytes));
            if n > 0 {
                room = room.min(u64::from(consumer_limit).saturating_sub(bytes));
            }
        }
        if self.prefetch_size_global > 0 && !self.unacked.is_empty() {
            let bytes: u64 = self.unacked.values().map(|u| u.bytes).sum();
            room = room.min(u64::from(self.prefetch_size_global).saturating_sub(bytes));
        }
        room
    }

    /// The next delivery tag (every delivery and get-ok takes one, settled or not).
    pub fn next_tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    /// Records a delivery that awaits settlement under `tag`.
    pub fn track(&mut self, tag: u64, d: Delivery<T>) {
        if let Some(cons) = d.consumer.as_ref().and_then(|t| self.consumers.get_mut(t)) {
            cons.unacked += 1;
        }
        self.unacked.insert(tag, d);
    }

    /// Puts back a delivery taken by `take` (a rolled-back transaction).
    pub fn restore(&mut self, tag: u64, d: Delivery<T>) {
        self.track(tag, d);
    }

    /// Removes the deliveries an ack/nack/reject names: one tag, or with `multiple`
    /// every tag up to it (0 = all). An unknown tag is PRECONDITION_FAILED, as RabbitMQ.
    pub fn take(&mut self, tag: u64, multiple: bool) -> Result<Vec<(u64, Delivery<T>)>, AmqpError> {
        let all = multiple && tag == 0;
        if !all && !self.unacked.contains_key(&tag) {
            return Err(AmqpError::precondition(format!(
                "unknown delivery tag {tag}"
            )));
        }
        let tags: Vec<u64> = match (multiple, tag) {
            (true, 0) => self.unacked.keys().copied().collect(),
            (true, _) => self.unacked.range(..=tag).map(|(t, _)| *t).collect(),
            (false, _) => vec![tag],
        };
        let mut out = Vec::new();
        for t in tags {
            if let Some(u) = self.unacked.remove(&t) {
                if let Some(cons) = u.consumer.as_ref().and_then(|c| self.consumers.get_mut(c)) {
                    cons.unacked = cons.unacked.saturating_sub(1);
                }
                out.push((t, u));
            }
        }
        Ok(out)
    }

    /// Every unsettled delivery (`basic.recover`, a closing channel); consumers' credit
    /// is whole again.
    pub fn take_all(&mut self) -> BTreeMap<u64, Delivery<T>> {
        for cons in self.consumers.values_mut() {
            cons.unacked = 0;
        }
        std::mem::take(&mut self.unacked)
    }

    /// When the oldest unsettled delivery went out (`consumer_timeout`).
    pub fn oldest_delivery(&self) -> Option<Instant> {
        self.unacked.values().map(|u| u.delivered_at).min()
    }

    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::PRECONDITION_FAILED;

    type D = Deliveries<&'static str, ()>;

    fn deliver(d: &mut D, consumer: Option<&str>, bytes: u64) -> u64 {
        let tag = d.next_tag();
        d.track(
            tag,
            Delivery {
                item: "m",
                consumer: consumer.map(str::to_string),
                bytes,
                delivered_at: Instant::now(),
            },
        );
        tag
    }

    fn tags(v: &[(u64, Delivery<&str>)]) -> Vec<u64> {
        v.iter().map(|(t, _)| *t).collect()
    }

    #[test]
    fn tags_count_up_from_one_including_unsettled_ones() {
        let mut d = D::default();
        assert_eq!(d.next_tag(), 1);
        assert_eq!(deliver(&mut d, None, 1), 2);
        assert_eq!(d.unacked_len(), 1);
    }

    #[test]
    fn ack_one_and_unknown_tag() {
        let mut d = D::default();
        let t1 = deliver(&mut d, None, 1);
        let t2 = deliver(&mut d, None, 1);
        assert_eq!(tags(&d.take(t2, false).unwrap()), vec![t2]);
        // Acked twice: unknown now.
        let e = d.take(t2, false).unwrap_err();
        assert_eq!(e.code, PRECONDITION_FAILED);
        assert_eq!(e.text, "unknown delivery tag 2");
        assert_eq!(d.take(99, true).unwrap_err().code, PRECONDITION_FAILED);
        assert_eq!(tags(&d.take(t1, false).unwrap()), vec![t1]);
    }

    #[test]
    fn multiple_takes_up_to_the_tag_and_zero_means_all() {
        let mut d = D::default();
        for _ in 0..5 {
            deliver(&mut d, None, 1);
        }
        d.take(2, false).unwrap();
        assert_eq!(tags(&d.take(3, true).unwrap()), vec![1, 3]);
        assert_eq!(tags(&d.take(0, true).unwrap()), vec![4, 5]);
        // Nothing left: multiple with 0 takes nothing and is no error.
        assert!(d.take(0, true).unwrap().is_empty());
        // Tag 0 alone (without multiple) is unknown.
        assert_eq!(d.take(0, false).unwrap_err().code, PRECONDITION_FAILED);
    }

    #[test]
    fn consumer_prefetch_count_limits_its_credit() {
        let mut d = D::default();
        d.qos(false, 2, 0);
        d.add_consumer("a".into(), false, ());
        assert!(d.has_consumer("a"));
        assert_eq!(d.credit("a").unwrap().1, Some(u64::MAX));
        deliver(&mut d, Some("a"), 10);
        let t = deliver(&mut d, Some("a"), 10);
        assert_eq!(d.credit("a").unwrap().1, None);
        assert_eq!(d.credit("a").unwrap().0.unacked(), 2);
        d.take(t, false).unwrap();
        assert_eq!(d.credit("a").unwrap().1, Some(u64::MAX));
        assert!(d.credit("missing").is_none());
    }

    #[test]
    fn a_saturated_consumer_waits_for_a_batch_of_acks() {
        assert_eq!(refill_threshold(1), 1);
        assert_eq!(refill_threshold(7), 1);
        assert_eq!(refill_threshold(100), 25);
        assert_eq!(refill_threshold(1000), REFILL_MAX);
        let mut d = D::default();
        d.qos(false, 100, 0);
        d.add_consumer("a".into(), false, ());
        d.add_consumer("auto".into(), true, ());
        // Nothing unacked: full credit, no waiting.
        assert!(!d.should_wait_for_refill("a"));
        let tags: Vec<u64> = (0..100).map(|_| deliver(&mut d, Some("a"), 1)).collect();
        // At the limit there is no credit at all (not a wait: `credit` says None).
        assert!(!d.should_wait_for_refill("a"));
        for (acked, t) in tags.iter().enumerate().take(24) {
            d.take(*t, false).unwrap();
            assert!(d.should_wait_for_refill("a"), "after {} acks", acked + 1);
        }
        d.take(tags[24], false).unwrap();
        assert!(!d.should_wait_for_refill("a"));
        assert!(!d.should_wait_for_refill("auto"));
        assert!(!d.should_wait_for_refill("missing"));
    }

    #[test]
    fn qos_applies_to_consumers_started_after_it() {
        let mut d = D::default();
        d.add_consumer("before".into(), false, ());
        d.qos(false, 1, 0);
        d.add_consumer("after".into(), false, ());
        deliver(&mut d, Some("before"), 1);
        deliver(&mut d, Some("after"), 1);
        assert_eq!(d.credit("before").unwrap().1, Some(u64::MAX));
        assert_eq!(d.credit("after").unwrap().1, None);
    }

    #[test]
    fn global_prefetch_count_covers_the_channel() {
        let mut d = D::default();
        d.qos(true, 2, 0);
        d.add_consumer("a".into(), false, ());
        d.add_consumer("b".into(), false, ());
        deliver(&mut d, Some("a"), 1);
        assert!(d.credit("b").unwrap().1.is_some());
        // A basic.get delivery counts too.
        deliver(&mut d, None, 1);
        assert_eq!(d.credit("a").unwrap().1, None);
        assert_eq!(d.credit("b").unwrap().1, None);
    }

    #[test]
    fn no_ack_consumers_have_no_limit() {
        let mut d = D::default();
        d.qos(true, 1, 1);
        d.add_consumer("a".into(), true, ());
        deliver(&mut d, None, 100);
        assert_eq!(d.credit("a").unwrap().1, Some(u64::MAX));
    }

    #[test]
    fn prefetch_size_leaves_room_for_one_message_when_nothing_is_unacked() {
        let mut d = D::default();
        d.qos(false, 0, 100);
        d.add_consumer("a".into(), false, ());
        assert_eq!(d.credit("a").unwrap().1, Some(u64::MAX));
        deliver(&mut d, Some("a"), 70);
        assert_eq!(d.credit("a").unwrap().1, Some(30));
        deliver(&mut d, Some("a"), 50);
        assert_eq!(d.credit("a").unwrap().1, Some(0));
    }

    #[test]
    fn global_prefetch_size_sums_the_channel() {
        let mut d = D::default();
        d.qos(true, 0, 100);
        d.add_consumer("a".into(), false, ());
        d.add_consumer("b".into(), false, ());
        deliver(&mut d, Some("a"), 40);
        deliver(&mut d, None, 20);
        assert_eq!(d.credit("b").unwrap().1, Some(40));
    }

    #[test]
    fn take_all_and_restore_keep_the_counts_right() {
        let mut d = D::default();
        d.qos(false, 3, 0);
        d.add_consumer("a".into(), false, ());
        deliver(&mut d, Some("a"), 1);
        let t = deliver(&mut d, Some("a"), 1);
        let taken = d.take(t, false).unwrap();
        assert_eq!(d.credit("a").unwrap().0.unacked(), 1);
        for (tag, u) in taken {
            d.restore(tag, u);
        }
        assert_eq!(d.credit("a").unwrap().0.unacked(), 2);
        assert!(d.oldest_delivery().is_some());
        assert_eq!(d.take_all().len(), 2);
        assert_eq!(d.credit("a").unwrap().0.unacked(), 0);
        assert!(d.oldest_delivery().is_none());
    }

    #[test]
    fn a_removed_consumers_deliveries_stay_unacked() {
        let mut d = D::default();
        d.add_consumer("a".into(), false, ());
        let t = deliver(&mut d, Some("a"), 1);
        assert!(d.remove_consumer("a").is_some());
        assert_eq!(d.unacked_len(), 1);
        assert_eq!(tags(&d.take(t, false).unwrap()), vec![t]);
    }
}
