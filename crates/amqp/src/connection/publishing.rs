//! Publishing glue: content frames into the channel's publish assembly, routing,
//! appends (one log write per queue per burst), and the confirms and commit-oks that
//! follow once stores are durable.

use super::*;

impl Conn {
    /// A content header or body frame: fed to the channel's publish assembly, and the
    /// publish stored once complete.
    pub(super) async fn content(&mut self, ch: u16, part: Content) -> Result<(), Fail> {
        let max = self.max_message_size;
        let Some(c) = self.channels.get_mut(&ch) else {
            return Err(Fail::Connection(
                AmqpError::new(CHANNEL_ERROR, format!("channel {ch} is not open")),
                MethodId::NONE,
            ));
        };
        if c.closing {
            return Ok(());
        }
        let before = c.publishing.buffered();
        let result = c.publishing.content(part, max);
        let after = c.publishing.buffered();
        self.bodies.adjust(before, after);
        match result {
            Ok(Some(p)) => self.publish_complete(ch, p).await,
            Ok(None) => Ok(()),
            Err(e) if e.connection => Err(Fail::Connection(e.error, BASIC_PUBLISH)),
            Err(e) => Err(Fail::Channel(ch, e.error, BASIC_PUBLISH)),
        }
    }

    pub(super) async fn publish_complete(
        &mut self,
        ch: u16,
        p: publish::Complete,
    ) -> Result<(), Fail> {
        crate::stats::add(&crate::stats::RECEIVED, 1);
        // As RabbitMQ: write on the exchange, before looking it up.
        self.permit(
            Access::Write,
            Resource::Exchange,
            p.publish.exchange.as_str(),
        )
        .map_err(|e| Fail::Channel(ch, e, BASIC_PUBLISH))?;
        let Some(c) = self.channels.get_mut(&ch) else {
            return Ok(());
        };
        if c.tx.active() {
            // Routed and stored at tx.commit; the exchange must exist now (as RabbitMQ).
            self.vhost
                .route(
                    p.publish.exchange.as_str(),
                    p.publish.routing_key.as_str(),
                    p.properties.headers().as_ref(),
                )
                .map_err(|e| Fail::Channel(ch, e, BASIC_PUBLISH))?;
            if !self.channels.contains_key(&ch) {
                return Ok(());
            }
            // Counted in the connection's and the node's body budgets until committed.
            let len = p.body.len();
            if let Err(spent) = self.bodies.take_tx(len) {
                let whose = match spent.which {
                    crate::budget::Spent::Connection => "this connection's transactions",
                    crate::budget::Spent::Node => "the node's buffered messages",
                };
                return Err(Fail::Channel(
                    ch,
                    AmqpError::precondition(format!(
                        "{whose} would hold more than {} bytes of uncommitted messages",
                        spent.limit
                    )),
                    BASIC_PUBLISH,
                ));
            }
            let Some(c) = self.channels.get_mut(&ch) else {
                self.bodies.release_tx(len);
                return Ok(());
            };
            let before = c.tx.buffered_bytes();
            let result = c.tx.publish(p);
            let after = c.tx.buffered_bytes();
            // A refused publish (over TX_MAX_BYTES) was not buffered.
            self.bodies.release_tx((before + len).saturating_sub(after));
            return result.map_err(|e| Fail::Channel(ch, e, BASIC_PUBLISH));
        }
        self.store_publish(ch, p.publish, p.properties, p.body)
            .await
    }

    /// Routes one publish and queues it for `flush_publishes` (or a tx.commit), which
    /// appends it and reports its confirm.
    pub(super) async fn store_publish(
        &mut self,
        ch: u16,
        publish: basic::Publish,
        props: AMQPProperties,
        body: Vec<u8>,
    ) -> Result<(), Fail> {
        let exchange = publish.exchange.as_str().to_string();
        let key = publish.routing_key.as_str().to_string();
        let own_ttl =
            crate::args::message_expiration(props.expiration().as_ref().map(|e| e.as_str()))
                .map_err(|e| Fail::Channel(ch, e, BASIC_PUBLISH))?;
        let priority = *props.priority();
        let queues = self
            .vhost
            .route(&exchange, &key, props.headers().as_ref())
            .map_err(|e| Fail::Channel(ch, e, BASIC_PUBLISH))?;
        let Some(c) = self.channels.get_mut(&ch) else {
            return Ok(());
        };
        let seq = c.confirms.register();
        if let Some(seq) = seq {
            c.confirm_started.push_back((seq, Instant::now()));
        }
        if queues.is_empty() {
            if publish.mandatory {
                let m = AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                    reply_code: NO_ROUTE,
                    reply_text: "NO_ROUTE".into(),
                    exchange: exchange.as_str().into(),
                    routing_key: key.as_str().into(),
                }));
                self.send(wire::method_with_content(
                    ch,
                    m,
                    &props,
                    &body,
                    self.frame_max,
                ))
                .await;
            }
            if let Some(seq) = seq {
                if let Some(c) = self.channels.get_mut(&ch) {
                    c.confirms.decide(seq, true);
                }
                self.flush_confirms(ch).await;
            }
            return Ok(());
        }
        let msg = StoredMessage {
            exchange,
            routing_key: key,
            properties: Bytes::from(wire::encode_properties(&props)),
            body: Bytes::from(body),
            timestamp: arctern_core::now_ms(),
        };
        let batch = encode_message(&msg, msg.timestamp);
        let routed = PendingPublish {
            ch,
            seq,
            queues,
            msg,
            batch,
            own_ttl,
            priority,
        };
        self.pending_bytes += routed.batch.len();
        self.pending.push(routed);
        Ok(())
    }

    /// Appends routed publishes, each queue's share with one log write; returns every
    /// publish's channel, confirm sequence number and waits for its stores, in order.
    /// With `lead_sync` (a tx.commit), publishes that all went to one queue are fsynced
    /// right after their write, on this thread (`Queue::sync_now`), instead of by the
    /// flusher: the client sits waiting for that sync, and the hand-offs to the flusher
    /// and back cost more than the sync on a fast disk. Several queues are left to their
    /// flushers, which sync them in parallel. Publishes with confirms are left to the
    /// flusher too: their client keeps sending, and this connection reads on meanwhile
    /// (leading their syncs here doubled the confirm p99 at a fixed rate once fsyncs
    /// turned slow).
    pub(super) async fn append_publishes(
        &mut self,
        mut publishes: Vec<PendingPublish>,
        lead_sync: bool,
    ) -> Vec<(u16, Option<u64>, Vec<StoredWait>)> {
        let mut groups: Vec<(Arc<Queue>, Vec<usize>, Vec<QueuedMessage>)> = Vec::new();
        for (i, p) in publishes.iter_mut().enumerate() {
            let last = p.queues.len().saturating_sub(1);
            for (k, q) in p.queues.iter().enumerate() {
                // The last queue takes the batch itself: one copy fewer per publish.
                let batch = if k == last {
                    std::mem::take(&mut p.batch)
                } else {
                    p.batch.clone()
                };
                let m = QueuedMessage {
                    batch,
                    bytes: p.msg.body.len() as u64,
                    own_ttl: p.own_ttl,
                    priority: p.priority,
                };
                match groups.iter_mut().find(|g| Arc::ptr_eq(&g.0, q)) {
                    Some(g) => {
                        g.1.push(i);
                        g.2.push(m);
                    }
                    None => groups.push((Arc::clone(q), vec![i], vec![m])),
                }
            }
        }
        let mut waits: Vec<Vec<StoredWait>> = publishes.iter().map(|_| Vec::new()).collect();
        let failed = |e: AmqpError| Box::pin(async move { Err(e) }) as StoredWait;
        let sync_now_next = lead_sync && groups.len() == 1;
        for (q, index, messages) in groups {
            match q.append_many(messages, sync_now_next) {
                Ok(outcomes) => {
                    if sync_now_next {
                        self.let_queued_output_go().await;
                        q.sync_now();
                    }
                    for (i, outcome) in index.into_iter().zip(outcomes) {
                        match outcome {
                            Enqueued::Stored(a) => {
                                self.note_appended(publishes[i].ch, &q, a);
                                waits[i].push(Box::pin(q.stored(a)));
                            }
                            Enqueued::Refused => {
                                // x-overflow=reject-publish(-dlx): a full queue refuses
                                // (basic.nack).
                                if q.args.overflow == crate::args::Overflow::RejectPublishDlx {
                                    self.vhost.dead_letter_refused(&q, publishes[i].msg.clone());
                                }
                                let e =
                                    AmqpError::precondition(format!("queue '{}' is full", q.name));
                                waits[i].push(failed(e));
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = %q.name, error = %e, "publish not stored");
                    for i in index {
                        waits[i].push(failed(e.clone()));
                    }
                }
            }
        }
        publishes
            .into_iter()
            .zip(waits)
            .map(|(p, w)| (p.ch, p.seq, w))
            .collect()
    }

    /// Remembers a channel's latest append to `q` (see `Channel::appended`), dropping
    /// the ones already committed.
    pub(super) fn note_appended(&mut self, ch: u16, q: &Arc<Queue>, a: Appended) {
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        c.appended.retain(|(other, seen)| {
            !Arc::ptr_eq(other, q) && !other.is_deleted() && !other.committed(seen)
        });
        c.appended.push((Arc::clone(q), a));
    }

    /// Waits until this channel's earlier publishes to `q` are committed (durable and
    /// replicated), so that a `basic.get` after them sees them, as in RabbitMQ, without
    /// showing anything a crash could take back. A failed store ends the wait too: what
    /// was not stored is not there to get.
    pub(super) async fn await_own_publishes(&mut self, ch: u16, q: &Arc<Queue>) {
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        let Some(i) = c.appended.iter().position(|(o, _)| Arc::ptr_eq(o, q)) else {
            return;
        };
        let (_, a) = c.appended.swap_remove(i);
        if !q.committed(&a) {
            if let Err(e) = q.stored(a).await {
                tracing::debug!(queue = %q.name, error = %e, "earlier publish not stored before basic.get");
            }
        }
    }

    /// Stores the publishes routed since the last call (see `PendingPublish`) and reports
    /// their confirms as their stores complete.
    pub(super) async fn flush_publishes(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let confirms: Vec<(u16, u64, Vec<StoredWait>)> = self
            .append_publishes(pending, false)
            .await
            .into_iter()
            .filter_map(|(ch, seq, waits)| seq.map(|s| (ch, s, waits)))
            .collect();
        if confirms.is_empty() {
            return;
        }
        let tx = self.confirm_tx.clone();
        tokio::spawn(async move {
            for (ch, seq, waits) in confirms {
                let mut ok = true;
                for w in waits {
                    if let Err(e) = w.await {
                        tracing::warn!(error = %e, "publish not acknowledged by storage");
                        ok = false;
                    }
                }
                if tx.send((ch, seq, ok)).is_err() {
                    return;
                }
            }
        });
    }

    /// tx.commit: stores the buffered publishes (routed now), applies the buffered
    /// settlements, and answers commit-ok (in commit order) once every publish is durable.
    pub(super) async fn tx_commit(&mut self, ch: u16) -> Result<(), Fail> {
        let Some(c) = self.channels.get_mut(&ch) else {
            return Ok(());
        };
        let held = c.tx.buffered_bytes();
        let (n, publishes, settles) = c.tx.commit();
        self.bodies.release_tx(held);
        let mut waits = Vec::new();
        // Routed one by one, stored together: one log write per queue for the commit
        // (`on_frame` flushed every earlier publish before this tx.commit).
        for p in publishes {
            self.store_publish(ch, p.publish, p.properties, p.body)
                .await?;
        }
        let routed = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        // A commit into one queue syncs it here (see `append_publishes`).
        for (_, _, w) in self.append_publishes(routed, true).await {
            waits.extend(w);
        }
        let (mut acks, mut requeues, mut rejects) = (Vec::new(), Vec::new(), Vec::new());
        for (_, u, how) in settles {
            match how {
                Settle::Ack => acks.push(u),
                Settle::Requeue => requeues.push(u),
                Settle::Reject => rejects.push(u),
            }
        }
        apply_settle(acks, Settle::Ack);
        apply_settle(requeues, Settle::Requeue);
        apply_settle(rejects, Settle::Reject);
        self.wake.notify_one();
        // Publishes stored and replicated already (a lone replica, after `sync_now`)
        // are decided now; the rest are awaited off this task.
        let mut ok = true;
        waits.retain_mut(|w| match poll_once(w) {
            Some(Ok(())) => false,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "transaction publish not stored");
                ok = false;
                false
            }
            None => true,
        });
        if waits.is_empty() {
            if let Some(c) = self.channels.get_mut(&ch) {
                c.tx.decide(n, ok);
            }
            return self
                .flush_commits(ch)
                .await
                .map_err(|e| Fail::Connection(e, TX_COMMIT));
        }
        let tx = self.commit_tx.clone();
        tokio::spawn(async move {
            for w in waits {
                if let Err(e) = w.await {
                    tracing::warn!(error = %e, "transaction publish not stored");
                    ok = false;
                }
            }
            let _ = tx.send((ch, n, ok));
        });
        Ok(())
    }

    /// Yields once, if frames wait for the writer, right before this task blocks its
    /// worker in a caller-led fdatasync: the writer it woke sits in the worker's LIFO
    /// slot, which no other worker steals, so those frames would otherwise wait out the
    /// sync. Only there, and only with frames queued: a yield costs a wake-up of the
    /// other worker, about a tenth of tx-1.
    pub(super) async fn let_queued_output_go(&self) {
        if self.out.capacity() < self.out.max_capacity() {
            tokio::task::yield_now().await;
        }
    }

    /// Sends the commit-oks that are decided, in commit order. A commit whose publishes
    /// could not be stored closes the connection (541), as the client cannot tell which
    /// of them are there.
    pub(super) async fn flush_commits(&mut self, ch: u16) -> Result<(), AmqpError> {
        let Some(c) = self.channels.get_mut(&ch) else {
            return Ok(());
        };
        let oks = c.tx.decided()?;
        for _ in 0..oks {
            self.reply(ch, AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})))
                .await;
        }
        Ok(())
    }

    /// Sends the confirms that are decided, in order: runs of acks coalesced with
    /// `multiple`, nacks one by one.
    pub(super) async fn flush_confirms(&mut self, ch: u16) {
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        let mut frames = Vec::new();
        let acked = c.confirms.drain(|confirm| {
            let m = match confirm {
                Confirm::Ack { tag, multiple } => basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: tag,
                    multiple,
                }),
                Confirm::Nack { tag } => basic::AMQPMethod::Nack(basic::Nack {
                    delivery_tag: tag,
                    multiple: false,
                    requeue: false,
                }),
            };
            frames.extend(wire::method(ch, AMQPClass::Basic(m)));
        });
        crate::stats::add(&crate::stats::CONFIRMED, acked);
        // Confirms go out in sequence order: everything up to the highest tag sent is done.
        let now = Instant::now();
        while let Some(&(seq, t)) = c.confirm_started.front() {
            if seq > c.confirms.confirmed_through() {
                break;
            }
            c.confirm_started.pop_front();
            crate::stats::PUBLISH_TO_CONFIRM.observe_duration(now.saturating_duration_since(t));
        }
        if !frames.is_empty() {
            self.send(frames).await;
        }
    }
}

/// The wait's outcome if it is already decided.
pub(super) fn poll_once(wait: &mut StoredWait) -> Option<Result<(), AmqpError>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match wait.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => Some(r),
        std::task::Poll::Pending => None,
    }
}
