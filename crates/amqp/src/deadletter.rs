//! Dead-lettering as RabbitMQ does it (sans-IO): why a message died, and the `x-death`
//! history written into its headers before it is republished to the dead-letter exchange.

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable};

use crate::args::string;

/// Why a message left its queue without being acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    /// basic.reject / basic.nack with requeue=false.
    Rejected,
    /// Its TTL (`x-message-ttl` or `expiration`) passed.
    Expired,
    /// Dropped or refused by `x-max-length` / `x-max-length-bytes`.
    MaxLen,
    /// Requeued more often than `x-delivery-limit` allows.
    DeliveryLimit,
}

impl DeathReason {
    pub fn name(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLen => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// Where a message died: the queue, and the exchange and routing key it was published with.
#[derive(Debug, Clone, Copy)]
pub struct Death<'a> {
    pub queue: &'a str,
    pub reason: DeathReason,
    pub exchange: &'a str,
    pub routing_key: &'a str,
    /// Seconds since the epoch.
    pub time: u64,
}

fn table_str(t: &FieldTable, k: &str) -> Option<String> {
    t.inner().get(k).and_then(string)
}

/// The `x-death` entries of a message's headers.
fn deaths(headers: Option<&FieldTable>) -> Vec<FieldTable> {
    match headers.and_then(|h| h.inner().get("x-death")) {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .filter_map(|v| match v {
                AMQPValue::FieldTable(t) => Some(t.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether dead-lettering to `target` would close a cycle RabbitMQ breaks: the message
/// already died in `target` and no death in its history was a rejection (a client
/// decision), so it would loop forever by expiry or length alone.
pub fn is_cycle(headers: Option<&FieldTable>, target: &str) -> bool {
    let history = deaths(headers);
    history
        .iter()
        .any(|d| table_str(d, "queue").as_deref() == Some(target))
        && !history
            .iter()
            .any(|d| table_str(d, "reason").as_deref() == Some("rejected"))
}

/// The properties of the dead-lettered copy: `x-death` gains (or counts up) the entry for
/// this queue and reason, most recent first; `x-first-death-*` are set once and
/// `x-last-death-*` every time; a per-message `expiration` moves into the entry as
/// `original-expiration`, so the copy does not expire again for the same reason.
pub fn mark_dead(props: &AMQPProperties, death: Death<'_>) -> AMQPProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    let mut history = deaths(Some(&headers));
    let same = |d: &FieldTable| {
        table_str(d, "queue").as_deref() == Some(death.queue)
            && table_str(d, "reason").as_deref() == Some(death.reason.name())
    };
    let entry = match history.iter().position(same) {
        Some(i) => {
            let mut e = history.remove(i);
            let count = match e.inner().get("count") {
                Some(v) => crate::args::integer(v).unwrap_or(0),
                None => 0,
            };
            e.insert("count".into(), AMQPValue::LongLongInt(count + 1));
            e.insert("time".into(), AMQPValue::Timestamp(death.time));
            e
        }
        None => {
            let mut e = FieldTable::default();
            e.insert("count".into(), AMQPValue::LongLongInt(1));
            e.insert(
                "reason".into(),
                AMQPValue::LongString(death.reason.name().into()),
            );
            e.insert("queue".into(), AMQPValue::LongString(death.queue.into()));
            e.insert("time".into(), AMQPValue::Timestamp(death.time));
            e.insert(
                "exchange".into(),
                AMQPValue::LongString(death.exchange.into()),
            );
            e.insert(
                "routing-keys".into(),
                AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongString(
                    death.routing_key.into(),
                )])),
            );
            if let Some(exp) = props.expiration() {
                e.insert(
                    "original-expiration".into(),
                    AMQPValue::LongString(exp.as_str().into()),
                );
            }
            e
        }
    };
    history.insert(0, entry);
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(
            history
                .into_iter()
                .map(AMQPValue::FieldTable)
                .collect::<Vec<_>>(),
        )),
    );
    let mut set = |k: &str, v: &str, once: bool| {
        if !(once && headers.contains_key(k)) {
            headers.insert(k.into(), AMQPValue::LongString(v.into()));
        }
    };
    set("x-first-death-reason", death.reason.name(), true);
    set("x-first-death-queue", death.queue, true);
    set("x-first-death-exchange", death.exchange, true);
    set("x-last-death-reason", death.reason.name(), false);
    set("x-last-death-queue", death.queue, false);
    set("x-last-death-exchange", death.exchange, false);
    without_expiration(props).with_headers(headers)
}

/// A copy of `p` without its `expiration` (the builder can only set fields).
fn without_expiration(p: &AMQPProperties) -> AMQPProperties {
    let mut out = AMQPProperties::default();
    if let Some(v) = p.content_type() {
        out = out.with_content_type(v.clone());
    }
    if let Some(v) = p.content_encoding() {
        out = out.with_content_encoding(v.clone());
    }
    if let Some(v) = p.headers() {
        out = out.with_headers(v.clone());
    }
    if let Some(v) = p.delivery_mode() {
        out = out.with_delivery_mode(*v);
    }
    if let Some(v) = p.priority() {
        out = out.with_priority(*v);
    }
    if let Some(v) = p.correlation_id() {
        out = out.with_correlation_id(v.clone());
    }
    if let Some(v) = p.reply_to() {
        out = out.with_reply_to(v.clone());
    }
    if let Some(v) = p.message_id() {
        out = out.with_message_id(v.clone());
    }
    if let Some(v) = p.timestamp() {
        out = out.with_timestamp(*v);
    }
    if let Some(v) = p.kind() {
        out = out.with_type(v.clone());
    }
    if let Some(v) = p.user_id() {
        out = out.with_user_id(v.clone());
    }
    if let Some(v) = p.app_id() {
        out = out.with_app_id(v.clone());
    }
    if let Some(v) = p.cluster_id() {
        out = out.with_cluster_id(v.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn death(queue: &str, reason: DeathReason) -> Death<'_> {
        Death {
            queue,
            reason,
            exchange: "ex",
            routing_key: "rk",
            time: 1_700_000_000,
        }
    }

    #[test]
    fn first_death_adds_an_entry_and_moves_expiration() {
        let p = AMQPProperties::default()
            .with_delivery_mode(2)
            .with_expiration("500".into())
            .with_message_id("m1".into());
        let d = mark_dead(&p, death("work", DeathReason::Expired));
        assert_eq!(d.expiration(), &None);
        assert_eq!(d.delivery_mode(), &Some(2));
        assert_eq!(d.message_id().as_ref().map(|s| s.as_str()), Some("m1"));
        let h = d.headers().clone().unwrap();
        let xs = deaths(Some(&h));
        assert_eq!(xs.len(), 1);
        assert_eq!(table_str(&xs[0], "reason").as_deref(), Some("expired"));
        assert_eq!(table_str(&xs[0], "queue").as_deref(), Some("work"));
        assert_eq!(
            table_str(&xs[0], "original-expiration").as_deref(),
            Some("500")
        );
        assert_eq!(xs[0].inner().get("count"), Some(&AMQPValue::LongLongInt(1)));
        assert_eq!(
            table_str(&h, "x-first-death-reason").as_deref(),
            Some("expired")
        );
        assert_eq!(table_str(&h, "x-last-death-queue").as_deref(), Some("work"));
    }

    #[test]
    fn repeated_deaths_count_up_most_recent_first() {
        let p = AMQPProperties::default();
        let once = mark_dead(&p, death("a", DeathReason::Rejected));
        let twice = mark_dead(&once, death("b", DeathReason::Expired));
        let thrice = mark_dead(&twice, death("a", DeathReason::Rejected));
        let h = thrice.headers().clone().unwrap();
        let xs = deaths(Some(&h));
        assert_eq!(xs.len(), 2);
        assert_eq!(table_str(&xs[0], "queue").as_deref(), Some("a"));
        assert_eq!(xs[0].inner().get("count"), Some(&AMQPValue::LongLongInt(2)));
        assert_eq!(table_str(&xs[1], "queue").as_deref(), Some("b"));
        assert_eq!(table_str(&h, "x-first-death-queue").as_deref(), Some("a"));
        assert_eq!(
            table_str(&h, "x-last-death-reason").as_deref(),
            Some("rejected")
        );
    }

    #[test]
    fn cycles_without_a_rejection_are_detected() {
        let p = AMQPProperties::default();
        let expired = mark_dead(&p, death("a", DeathReason::Expired));
        assert!(is_cycle(expired.headers().as_ref(), "a"));
        assert!(!is_cycle(expired.headers().as_ref(), "b"));
        let rejected = mark_dead(&expired, death("b", DeathReason::Rejected));
        assert!(!is_cycle(rejected.headers().as_ref(), "a"));
        assert!(!is_cycle(None, "a"));
    }
}
