//! Channel methods: one arm per AMQP method, each validating against the channel's
//! state machines and performing the vhost / queue calls and replies.

use super::*;

impl Conn {
    /// queue.bind / queue.unbind / exchange.bind / exchange.unbind: `names` is
    /// (destination, source exchange, routing key), `kind` is (unbind, to an exchange);
    /// `ok` is sent unless the client asked for nowait.
    pub(super) async fn bind_op(
        &mut self,
        ch: u16,
        names: (&str, &str, &str),
        arguments: &FieldTable,
        kind: (bool, bool),
        ok: Option<AMQPClass>,
    ) -> Result<(), AmqpError> {
        let (destination, source, key) = names;
        let (unbind, to_exchange) = kind;
        // As RabbitMQ: write on the destination, read on the source exchange.
        let dest_kind = if to_exchange {
            Resource::Exchange
        } else {
            Resource::Queue
        };
        self.permit(Access::Write, dest_kind, destination)?;
        self.permit(Access::Read, Resource::Exchange, source)?;
        self.vhost
            .bind(
                self.id,
                destination,
                source,
                key,
                arguments,
                unbind,
                to_exchange,
            )
            .await?;
        if let Some(ok) = ok {
            self.reply(ch, ok).await;
        }
        Ok(())
    }

    pub(super) async fn method(&mut self, ch: u16, m: AMQPClass) -> Result<(), Fail> {
        let cause = MethodId::of(&m);
        let chan_err = |e: AmqpError| {
            if is_connection_error(e.code) {
                Fail::Connection(e, cause)
            } else {
                Fail::Channel(ch, e, cause)
            }
        };
        // Channel open / close first: they are valid on channels in any state.
        match &m {
            AMQPClass::Channel(channel::AMQPMethod::Open(_)) => {
                if ch > self.channel_max {
                    return Err(Fail::Connection(
                        AmqpError::new(
                            CHANNEL_ERROR,
                            format!("channel {ch} exceeds channel_max {}", self.channel_max),
                        ),
                        cause,
                    ));
                }
                if self.channels.contains_key(&ch) {
                    return Err(Fail::Connection(
                        AmqpError::new(
                            CHANNEL_ERROR,
                            format!("second 'channel.open' seen on channel {ch}"),
                        ),
                        cause,
                    ));
                }
                self.channels.insert(ch, Channel::default());
                self.reply(
                    ch,
                    AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
                )
                .await;
                return Ok(());
            }
            AMQPClass::Channel(channel::AMQPMethod::Close(_)) => {
                self.channel(ch)?;
                self.release_channel(ch, true).await;
                self.reply(
                    ch,
                    AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                )
                .await;
                return Ok(());
            }
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) => {
                self.channel(ch)?;
                self.channels.remove(&ch);
                return Ok(());
            }
            _ => {}
        }
        let c = self.channel(ch)?;
        if c.closing {
            // After channel.close the peer's frames are discarded until close-ok.
            return Ok(());
        }
        if c.publishing.in_progress() {
            return Err(Fail::Connection(
                AmqpError::new(UNEXPECTED_FRAME, "expected content header/body"),
                cause,
            ));
        }
        match m {
            AMQPClass::Channel(channel::AMQPMethod::Flow(f)) => {
                // The client asks us to pause (or resume) deliveries on this channel.
                c.paused = !f.active;
                if f.active {
                    self.wake.notify_one();
                }
                self.reply(
                    ch,
                    AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: f.active,
                    })),
                )
                .await;
            }
            AMQPClass::Basic(basic::AMQPMethod::Publish(p)) => {
                if p.immediate {
                    return Err(Fail::Connection(
                        AmqpError::new(NOT_IMPLEMENTED, "immediate=true"),
                        cause,
                    ));
                }
                c.publishing.start(p);
            }
            AMQPClass::Confirm(confirm::AMQPMethod::Select(s)) => {
                if c.tx.active() {
                    return Err(chan_err(AmqpError::precondition(
                        "cannot switch from tx to confirm mode",
                    )));
                }
                c.confirms.enable();
                if !s.nowait {
                    self.reply(
                        ch,
                        AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                    )
                    .await;
                }
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Declare(d)) => {
                let name = d.exchange.as_str();
                if d.passive {
                    self.permit_any(Resource::Exchange, name)
                        .map_err(chan_err)?;
                } else {
                    self.permit(Access::Configure, Resource::Exchange, name)
                        .map_err(chan_err)?;
                    // A new exchange with an alternate: read on it, write on the alternate.
                    let ae = d
                        .arguments
                        .inner()
                        .get(crate::vhost::ALTERNATE_EXCHANGE)
                        .and_then(crate::args::string);
                    if let Some(ae) = ae.filter(|_| !self.vhost.has_exchange(name)) {
                        self.permit(Access::Read, Resource::Exchange, name)
                            .map_err(chan_err)?;
                        self.permit(Access::Write, Resource::Exchange, &ae)
                            .map_err(chan_err)?;
                    }
                }
                self.vhost
                    .exchange_declare(
                        d.exchange.as_str(),
                        d.kind.as_str(),
                        d.passive,
                        d.durable,
                        d.auto_delete,
                        d.internal,
                        d.arguments,
                    )
                    .await
                    .map_err(chan_err)?;
                if !d.nowait {
                    self.reply(
                        ch,
                        AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(
                            exchange::DeclareOk {},
                        )),
                    )
                    .await;
                }
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Delete(d)) => {
                self.permit(Access::Configure, Resource::Exchange, d.exchange.as_str())
                    .map_err(chan_err)?;
                self.vhost
                    .exchange_delete(d.exchange.as_str(), d.if_unused)
                    .await
                    .map_err(chan_err)?;
                if !d.nowait {
                    self.reply(
                        ch,
                        AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
                    )
                    .await;
                }
            }
            AMQPClass::Queue(queue::AMQPMethod::Declare(d)) => {
                // A server-named queue is named first: the check is on that name.
                let generated = d.queue.as_str().is_empty() && !d.passive;
                let name = if generated {
                    crate::vhost::server_named()
                } else {
                    d.queue.as_str().to_string()
                };
                if d.passive {
                    self.permit_any(Resource::Queue, &name).map_err(chan_err)?;
                } else {
                    self.permit(Access::Configure, Resource::Queue, &name)
                        .map_err(chan_err)?;
                    // A new queue with a dead-letter exchange: read on it, write on the DLX.
                    let dlx = d
                        .arguments
                        .inner()
                        .get("x-dead-letter-exchange")
                        .and_then(crate::args::string);
                    if let Some(dlx) = dlx.filter(|_| !self.vhost.has_queue(&name)) {
                        self.permit(Access::Read, Resource::Queue, &name)
                            .map_err(chan_err)?;
                        self.permit(Access::Write, Resource::Exchange, &dlx)
                            .map_err(chan_err)?;
                    }
                }
                let spec = QueueSpec {
                    name,
                    generated,
                    passive: d.passive,
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                    arguments: d.arguments,
                };
                let (name, messages, consumers) = self
                    .vhost
                    .queue_declare(self.id, spec)
                    .await
                    .map_err(chan_err)?;
                if !d.nowait {
                    self.reply(
                        ch,
                        AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                            queue: name.as_str().into(),
                            message_count: messages,
                            consumer_count: consumers,
                        })),
                    )
                    .await;
                }
            }
            AMQPClass::Queue(queue::AMQPMethod::Bind(b)) => {
                let ok = AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {}));
                let names = (
                    b.queue.as_str(),
                    b.exchange.as_str(),
                    b.routing_key.as_str(),
                );
                self.bind_op(
                    ch,
                    names,
                    &b.arguments,
                    (false, false),
                    (!b.nowait).then_some(ok),
                )
                .await
                .map_err(chan_err)?;
            }
            AMQPClass::Queue(queue::AMQPMethod::Unbind(b)) => {
                // queue.unbind has no nowait flag: always answered.
                let ok = AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {}));
                let names = (
                    b.queue.as_str(),
                    b.exchange.as_str(),
                    b.routing_key.as_str(),
                );
                self.bind_op(ch, names, &b.arguments, (true, false), Some(ok))
                    .await
                    .map_err(chan_err)?;
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Bind(b)) => {
                let ok = AMQPClass::Exchange(exchange::AMQPMethod::BindOk(exchange::BindOk {}));
                let names = (
                    b.destination.as_str(),
                    b.source.as_str(),
                    b.routing_key.as_str(),
                );
                self.bind_op(
                    ch,
                    names,
                    &b.arguments,
                    (false, true),
                    (!b.nowait).then_some(ok),
                )
                .await
                .map_err(chan_err)?;
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Unbind(b)) => {
                let ok = AMQPClass::Exchange(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}));
                let names = (
                    b.destination.as_str(),
                    b.source.as_str(),
                    b.routing_key.as_str(),
                );
                self.bind_op(
                    ch,
                    names,
                    &b.arguments,
                    (true, true),
                    (!b.nowait).then_some(ok),
                )
                .await
                .map_err(chan_err)?;
            }
            AMQPClass::Queue(queue::AMQPMethod::Purge(p)) => {
                self.permit(Access::Read, Resource::Queue, p.queue.as_str())
                    .map_err(chan_err)?;
                let n = self
                    .vhost
                    .queue_purge(self.id, p.queue.as_str())
                    .map_err(chan_err)?;
                if !p.nowait {
                    self.reply(
                        ch,
                        AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                            message_count: n,
                        })),
                    )
                    .await;
                }
            }
            AMQPClass::Queue(queue::AMQPMethod::Delete(d)) => {
                self.permit(Access::Configure, Resource::Queue, d.queue.as_str())
                    .map_err(chan_err)?;
                let n = self
                    .vhost
                    .queue_delete(self.id, d.queue.as_str(), d.if_unused, d.if_empty)
                    .await
                    .map_err(chan_err)?;
                if !d.nowait {
                    self.reply(
                        ch,
                        AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                            message_count: n,
                        })),
                    )
                    .await;
                }
            }
            AMQPClass::Basic(basic::AMQPMethod::Qos(q)) => {
                let size = self.qos_prefetch_size;
                let c = self.channel(ch)?;
                c.deliveries.qos(q.global, q.prefetch_count, size);
                self.reply(
                    ch,
                    AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
                )
                .await;
                self.wake.notify_one();
            }
            AMQPClass::Basic(basic::AMQPMethod::Consume(b)) => {
                self.permit(Access::Read, Resource::Queue, b.queue.as_str())
                    .map_err(chan_err)?;
                let q = self
                    .vhost
                    .queue(self.id, b.queue.as_str())
                    .map_err(chan_err)?;
                let tag = if b.consumer_tag.as_str().is_empty() {
                    format!("amq.ctag-{}", uuid::Uuid::new_v4().simple())
                } else {
                    b.consumer_tag.as_str().to_string()
                };
                let priority = match b.arguments.inner().get("x-priority") {
                    None => 0,
                    Some(v) => crate::args::integer(v)
                        .and_then(|p| i32::try_from(p).ok())
                        .ok_or_else(|| {
                            chan_err(AmqpError::precondition(format!(
                                "invalid arg 'x-priority' for consumer '{tag}': {v:?}"
                            )))
                        })?,
                };
                let active = Arc::new(std::sync::atomic::AtomicBool::new(true));
                let c = self.channel(ch)?;
                if c.deliveries.has_consumer(&tag) {
                    return Err(Fail::Connection(
                        AmqpError::new(
                            NOT_ALLOWED,
                            format!("attempt to reuse consumer tag '{tag}'"),
                        ),
                        cause,
                    ));
                }
                q.add_consumer(ConsumerReg {
                    conn: self.id,
                    channel: ch,
                    tag: tag.clone(),
                    exclusive: b.exclusive,
                    priority,
                    active: Arc::clone(&active),
                    wake: Arc::clone(&self.wake),
                    cancel: self.cancel_tx.clone(),
                })
                .map_err(|e| chan_err(crate::vhost::in_vhost(e, self.vhost.name())))?;
                let c = self.channel(ch)?;
                let link = ConsumerLink {
                    queue: q,
                    priority,
                    active,
                    exclusive: b.exclusive,
                    arguments: b.arguments.clone(),
                };
                c.deliveries.add_consumer(tag.clone(), b.no_ack, link);
                if !b.nowait {
                    self.reply(
                        ch,
                        AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                            consumer_tag: tag.as_str().into(),
                        })),
                    )
                    .await;
                }
                self.wake.notify_one();
            }
            AMQPClass::Basic(basic::AMQPMethod::Cancel(b)) => {
                let tag = b.consumer_tag.as_str().to_string();
                if let Some(cons) = c.deliveries.remove_consumer(&tag) {
                    let auto = cons.link.queue.remove_consumer(self.id, ch, &tag);
                    self.vhost.consumer_gone(&cons.link.queue, auto).await;
                }
                if !b.nowait {
                    self.reply(
                        ch,
                        AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                            consumer_tag: tag.as_str().into(),
                        })),
                    )
                    .await;
                }
            }
            AMQPClass::Basic(basic::AMQPMethod::Get(g)) => {
                self.permit(Access::Read, Resource::Queue, g.queue.as_str())
                    .map_err(chan_err)?;
                let q = self
                    .vhost
                    .queue(self.id, g.queue.as_str())
                    .map_err(chan_err)?;
                q.touch();
                self.await_own_publishes(ch, &q).await;
                let Some((offset, entry)) = q.take_next(u64::MAX, None) else {
                    self.reply(
                        ch,
                        AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
                    )
                    .await;
                    return Ok(());
                };
                let msg = match q.read(offset) {
                    Ok(m) => m,
                    Err(e) => {
                        q.requeue(&[(offset, entry)]);
                        return Err(chan_err(e));
                    }
                };
                let redelivered = entry.redelivered;
                crate::stats::add(&crate::stats::DELIVERED, 1);
                if redelivered {
                    crate::stats::add(&crate::stats::REDELIVERED, 1);
                }
                q.counters.delivered(redelivered);
                let c = self.channel(ch)?;
                let tag_no = c.deliveries.next_tag();
                if g.no_ack {
                    q.settle(&[offset]);
                } else {
                    let d = Delivery {
                        bytes: entry.bytes,
                        item: Delivered {
                            queue: Arc::clone(&q),
                            offset,
                            entry,
                        },
                        consumer: None,
                        delivered_at: Instant::now(),
                    };
                    c.deliveries.track(tag_no, d);
                    q.mark_delivered(&[offset]);
                    q.cover_delivery(offset).await;
                }
                let m = AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
                    delivery_tag: tag_no,
                    redelivered,
                    exchange: msg.exchange.as_str().into(),
                    routing_key: msg.routing_key.as_str().into(),
                    message_count: q.message_count(),
                }));
                let props: AMQPProperties =
                    wire::decode_properties(&msg.properties).unwrap_or_default();
                self.send(wire::method_with_content(
                    ch,
                    m,
                    &props,
                    &msg.body,
                    self.frame_max,
                ))
                .await;
            }
            AMQPClass::Basic(basic::AMQPMethod::Ack(a)) => {
                let taken = c
                    .deliveries
                    .take(a.delivery_tag, a.multiple)
                    .map_err(chan_err)?;
                if c.tx.active() {
                    settle_or_buffer(c, taken, Settle::Ack);
                } else {
                    // Recorded with the rest of the burst (`flush_acks`).
                    self.acked.extend(taken.into_iter().map(|(_, u)| u));
                }
                self.wake.notify_one();
            }
            AMQPClass::Basic(basic::AMQPMethod::Nack(n)) => {
                let taken = c
                    .deliveries
                    .take(n.delivery_tag, n.multiple)
                    .map_err(chan_err)?;
                settle_or_buffer(c, taken, Settle::rejected(n.requeue));
                self.wake.notify_one();
            }
            AMQPClass::Basic(basic::AMQPMethod::Reject(r)) => {
                let taken = c.deliveries.take(r.delivery_tag, false).map_err(chan_err)?;
                settle_or_buffer(c, taken, Settle::rejected(r.requeue));
                self.wake.notify_one();
            }
            AMQPClass::Basic(basic::AMQPMethod::Recover(_))
            | AMQPClass::Basic(basic::AMQPMethod::RecoverAsync(_)) => {
                // Both requeue (RabbitMQ does not implement requeue=false either).
                requeue(c.deliveries.take_all().into_values());
                if matches!(m, AMQPClass::Basic(basic::AMQPMethod::Recover(_))) {
                    self.reply(
                        ch,
                        AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                    )
                    .await;
                }
                self.wake.notify_one();
            }
            AMQPClass::Tx(tx::AMQPMethod::Select(_)) => {
                if c.confirms.enabled() {
                    return Err(chan_err(AmqpError::precondition(
                        "cannot switch from confirm to tx mode",
                    )));
                }
                c.tx.select();
                self.reply(ch, AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})))
                    .await;
            }
            AMQPClass::Tx(tx::AMQPMethod::Commit(_)) => {
                if !c.tx.active() {
                    return Err(chan_err(AmqpError::precondition(
                        "channel is not transactional",
                    )));
                }
                self.tx_commit(ch).await?;
            }
            AMQPClass::Tx(tx::AMQPMethod::Rollback(_)) => {
                if !c.tx.active() {
                    return Err(chan_err(AmqpError::precondition(
                        "channel is not transactional",
                    )));
                }
                // Settlements are undone: those deliveries are unacked again.
                let held = c.tx.buffered_bytes();
                let settles = c.tx.rollback();
                self.bodies.release_tx(held);
                let Some(c) = self.channels.get_mut(&ch) else {
                    return Ok(());
                };
                for (tag, u, _) in settles {
                    c.deliveries.restore(tag, u);
                }
                self.reply(
                    ch,
                    AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})),
                )
                .await;
            }
            _ => {
                return Err(Fail::Connection(
                    AmqpError::new(COMMAND_INVALID, "unexpected method"),
                    cause,
                ));
            }
        }
        Ok(())
    }
}
