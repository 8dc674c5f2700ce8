//! Delivering glue: the pump that takes messages from queues to consumers with credit
//! (`Deliveries`), settlements applied to queues, ack timeouts and server-side cancels.

use super::*;

impl Conn {
    pub(super) async fn server_cancel(&mut self, ch: u16, tag: String) {
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        if c.deliveries.remove_consumer(&tag).is_none() || c.closing {
            return;
        }
        self.reply(
            ch,
            AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                consumer_tag: tag.as_str().into(),
                nowait: true,
            })),
        )
        .await;
    }

    /// RabbitMQ's `consumer_timeout`: a channel holding a delivery unacknowledged for
    /// longer is closed with PRECONDITION_FAILED; its deliveries go back to their queues.
    pub(super) async fn check_ack_timeouts(&mut self) {
        let Some(timeout) = self.consumer_timeout else {
            return;
        };
        let expired: Vec<u16> = self
            .channels
            .iter()
            .filter(|(_, c)| !c.closing)
            .filter(|(_, c)| {
                c.deliveries
                    .oldest_delivery()
                    .is_some_and(|t| t.elapsed() > timeout)
            })
            .map(|(ch, _)| *ch)
            .collect();
        for ch in expired {
            let e = AmqpError::precondition(format!(
                "delivery acknowledgement on channel {ch} timed out. Timeout value used: {} ms. This timeout value can be configured, see consumers doc guide to learn more",
                timeout.as_millis()
            ));
            self.close_channel(ch, e, MethodId::NONE).await;
        }
    }

    /// Delivers ready messages to consumers with credit.
    /// Delivers ready messages to every consumer with credit, all of a round in one
    /// buffer (one hand-off to the writer). Without `force`, a consumer that still holds
    /// most of its prefetch waits for more acks (`Deliveries::should_wait_for_refill`) and
    /// `withheld` is set, so the connection pumps with `force` once the client is quiet.
    pub(super) async fn pump(&mut self, force: bool) {
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        let mut more = false;
        self.withheld = false;
        let mut out = Vec::new();
        for ch in ids {
            let tags: Vec<String> = match self.channels.get(&ch) {
                Some(c) if !c.closing && !c.paused => c.deliveries.consumer_tags(),
                Some(c) => {
                    for (_, cons) in c.deliveries.consumers() {
                        cons.link.set_active(false);
                    }
                    continue;
                }
                None => continue,
            };
            for tag in tags {
                let mut delivered = Vec::new();
                let mut settled = Vec::new();
                let mut queue = None;
                // Messages read ahead of the one delivered (log order), for the rest of
                // this consumer's round; its first message is read alone, so a round of
                // one (a consumer keeping up) reads no more than it sends.
                let mut ahead: std::collections::VecDeque<(i64, StoredMessage)> =
                    Default::default();
                for round in 0..PUMP_BATCH {
                    let Some(c) = self.channels.get_mut(&ch) else {
                        break;
                    };
                    if round == 0 && !force && c.deliveries.should_wait_for_refill(&tag) {
                        self.withheld = true;
                        break;
                    }
                    let Some((cons, room)) = c.deliveries.credit(&tag) else {
                        break;
                    };
                    let Some(room) = room else {
                        cons.link.set_active(false);
                        break;
                    };
                    cons.link.set_active(true);
                    let q = Arc::clone(&cons.link.queue);
                    let no_ack = cons.no_ack;
                    let taker = Taker {
                        priority: cons.link.priority,
                        active: &cons.link.active,
                    };
                    let Some((offset, entry)) = q.take_next(room, Some(taker)) else {
                        break;
                    };
                    // Nothing goes out past the durable delivery horizon (see `record`).
                    if !no_ack {
                        q.cover_delivery(offset).await;
                    }
                    let redelivered = entry.redelivered;
                    crate::stats::add(&crate::stats::DELIVERED, 1);
                    if redelivered {
                        crate::stats::add(&crate::stats::REDELIVERED, 1);
                    }
                    q.counters.delivered(redelivered);
                    let read = match take_ahead(&mut ahead, offset) {
                        Some(m) => Ok(m),
                        None if round == 0 => q.read(offset),
                        None => q.read_ahead(offset, READ_AHEAD_BYTES).and_then(|v| {
                            ahead = v.into();
                            take_ahead(&mut ahead, offset).ok_or_else(|| {
                                AmqpError::internal(format!("no message at offset {offset}"))
                            })
                        }),
                    };
                    let msg = match read {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::error!(queue = %q.name, offset, error = %e, "cannot read a queued message; settling it");
                            q.settle(&[offset]);
                            continue;
                        }
                    };
                    let tag_no = c.deliveries.next_tag();
                    if no_ack {
                        settled.push(offset);
                    } else {
                        let d = Delivery {
                            bytes: entry.bytes,
                            item: Delivered {
                                queue: Arc::clone(&q),
                                offset,
                                entry,
                            },
                            consumer: Some(tag.clone()),
                            delivered_at: Instant::now(),
                        };
                        c.deliveries.track(tag_no, d);
                        delivered.push(offset);
                    }
                    let d = wire::Delivery {
                        channel: ch,
                        consumer_tag: &tag,
                        delivery_tag: tag_no,
                        redelivered,
                        exchange: &msg.exchange,
                        routing_key: &msg.routing_key,
                        properties: &msg.properties,
                        body: &msg.body,
                    };
                    if !wire::append_delivery(&mut out, &d, self.frame_max) {
                        let m = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                            consumer_tag: tag.as_str().into(),
                            delivery_tag: tag_no,
                            redelivered,
                            exchange: msg.exchange.as_str().into(),
                            routing_key: msg.routing_key.as_str().into(),
                        }));
                        let props = wire::decode_properties(&msg.properties).unwrap_or_default();
                        out.extend(wire::method_with_content(
                            ch,
                            m,
                            &props,
                            &msg.body,
                            self.frame_max,
                        ));
                    }
                    // A large round is not held back in memory.
                    if out.len() >= WRITE_COALESCE {
                        self.send(std::mem::take(&mut out)).await;
                    }
                    queue = Some(q);
                    if delivered.len() + settled.len() == PUMP_BATCH {
                        more = true;
                    }
                }
                if let Some(q) = queue {
                    q.mark_delivered(&delivered);
                    q.settle(&settled);
                }
            }
        }
        if !out.is_empty() {
            self.send(out).await;
        }
        if more {
            self.wake.notify_one();
        }
    }
}

impl Conn {
    /// Records the settlements of the acks buffered since the last call (one record per
    /// queue). Not awaited, as every settlement: one lost to a crash means a redelivery.
    pub(super) fn flush_acks(&mut self) {
        if !self.acked.is_empty() {
            apply_settle(std::mem::take(&mut self.acked), Settle::Ack);
        }
    }
}

/// Bytes one read-ahead asks the log for (a pump round delivers at most `PUMP_BATCH`).
const READ_AHEAD_BYTES: usize = 128 << 10;

/// The message at `offset` from what was read ahead, dropping what lies before it.
fn take_ahead(
    ahead: &mut std::collections::VecDeque<(i64, StoredMessage)>,
    offset: i64,
) -> Option<StoredMessage> {
    while ahead.front().is_some_and(|(o, _)| *o < offset) {
        ahead.pop_front();
    }
    match ahead.front() {
        Some((o, _)) if *o == offset => ahead.pop_front().map(|(_, m)| m),
        _ => None,
    }
}

/// Applies settlements now, or buffers them until tx.commit on a transactional channel.
pub(super) fn settle_or_buffer(c: &mut Channel, taken: Vec<(u64, Unacked)>, how: Settle) {
    if c.tx.active() {
        c.tx.settle(taken.into_iter().map(|(t, u)| (t, u, how)));
    } else {
        apply_settle(taken.into_iter().map(|(_, u)| u).collect(), how);
    }
}

impl Settle {
    pub(super) fn rejected(requeue: bool) -> Settle {
        if requeue {
            Settle::Requeue
        } else {
            Settle::Reject
        }
    }
}

pub(super) fn group(items: impl Iterator<Item = Unacked>) -> ByQueue {
    let mut by: ByQueue = Vec::new();
    for u in items {
        let u = u.item;
        match by.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue)) {
            Some((_, v)) => v.push((u.offset, u.entry)),
            None => by.push((u.queue, vec![(u.offset, u.entry)])),
        }
    }
    by
}

pub(super) fn apply_settle(items: Vec<Unacked>, how: Settle) {
    if how == Settle::Requeue {
        return requeue(items.into_iter());
    }
    if how == Settle::Ack {
        crate::stats::add(&crate::stats::ACKNOWLEDGED, items.len() as u64);
    }
    for (q, taken) in group(items.into_iter()) {
        let offsets: Vec<i64> = taken.iter().map(|t| t.0).collect();
        if how == Settle::Ack {
            q.counters.acked(offsets.len() as u64);
        }
        match how {
            Settle::Reject => q.reject(&offsets),
            _ => q.settle(&offsets),
        }
    }
}

pub(super) fn requeue(items: impl Iterator<Item = Unacked>) {
    for (q, taken) in group(items) {
        q.requeue(&taken);
    }
}

/// Deliveries grouped by their queue.
type ByQueue = Vec<(Arc<Queue>, Vec<(i64, Entry)>)>;
