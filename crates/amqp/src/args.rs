//! RabbitMQ's optional queue arguments (`x-*`), parsed and checked at queue.declare
//! (sans-IO). Invalid values are refused with 406 PRECONDITION_FAILED and a reply text in
//! RabbitMQ's shape, so a client sees the same failure it would see there.

use amq_protocol::types::{AMQPValue, FieldTable};

use crate::codes::AmqpError;

/// What happens to a publish that would take a full queue over its length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// The oldest ready messages are dropped (or dead-lettered) to make room.
    #[default]
    DropHead,
    /// The new message is refused: basic.nack with confirms, silently dropped without.
    RejectPublish,
    /// As RejectPublish, and the refused message is dead-lettered.
    RejectPublishDlx,
}

/// The queue arguments Arctern gives a meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueArgs {
    /// `x-message-ttl`: milliseconds a message may stay in the queue.
    pub message_ttl: Option<i64>,
    /// `x-expires`: milliseconds the queue may stay unused before it is deleted.
    pub expires: Option<i64>,
    /// `x-max-length`: most ready messages.
    pub max_length: Option<u64>,
    /// `x-max-length-bytes`: most bytes of ready message bodies.
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    /// `x-dead-letter-exchange` ("" is the default exchange).
    pub dead_letter_exchange: Option<String>,
    /// `x-dead-letter-routing-key`: replaces the message's routing key when dead-lettered.
    pub dead_letter_routing_key: Option<String>,
    /// `x-delivery-limit`: deliveries that may end in a requeue before the message is
    /// dead-lettered (or dropped).
    pub delivery_limit: Option<u32>,
    /// `x-single-active-consumer`: one consumer at a time receives messages.
    pub single_active_consumer: bool,
    /// `x-max-priority`: the queue delivers higher `priority` messages first; a message's
    /// priority is capped at this. `None`: no priorities (every message counts as 0).
    pub max_priority: Option<u8>,
}

impl QueueArgs {
    /// The priority a message published with `priority` gets in this queue.
    pub fn priority_of(&self, priority: Option<u8>) -> u8 {
        self.max_priority
            .map_or(0, |max| priority.unwrap_or(0).min(max))
    }
}

/// Arguments RabbitMQ gives a meaning that Arctern does not implement: refused rather than
/// silently ignored.
const UNSUPPORTED: &[&str] = &[
    "x-quorum-initial-group-size",
    "x-stream-max-segment-size-bytes",
    "x-max-age",
];

/// Placement and storage hints that have no effect on Arctern (every queue is a log).
const IGNORED_HINTS: &[&str] = &[
    "x-queue-mode",
    "x-queue-master-locator",
    "x-queue-leader-locator",
];

pub fn integer(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::ShortShortInt(i) => Some((*i).into()),
        AMQPValue::ShortShortUInt(i) => Some((*i).into()),
        AMQPValue::ShortInt(i) => Some((*i).into()),
        AMQPValue::ShortUInt(i) => Some((*i).into()),
        AMQPValue::LongInt(i) => Some((*i).into()),
        AMQPValue::LongUInt(i) => Some((*i).into()),
        AMQPValue::LongLongInt(i) => Some(*i),
        _ => None,
    }
}

pub fn string(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

pub fn type_name(v: &AMQPValue) -> &'static str {
    match v {
        AMQPValue::LongString(_) => "longstr",
        AMQPValue::ShortString(_) => "shortstr",
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::Float(_) | AMQPValue::Double(_) => "float",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Void => "void",
        _ => "other",
    }
}

impl QueueArgs {
    /// Parses and checks a declaration's arguments.
    pub fn parse(queue: &str, args: &FieldTable) -> Result<QueueArgs, AmqpError> {
        let invalid = |arg: &str, what: String| {
            AmqpError::precondition(format!(
                "invalid arg '{arg}' for queue '{queue}' in vhost '/': {what}"
            ))
        };
        let mut out = QueueArgs::default();
        for (k, v) in args {
            let k = k.as_str();
            if UNSUPPORTED.contains(&k) {
                return Err(AmqpError::precondition(format!(
                    "queue argument '{k}' is not supported by Arctern"
                )));
            }
            if IGNORED_HINTS.contains(&k) {
                continue;
            }
            // A non-negative (or, with `positive`, >= 1) integer argument.
            let number = |positive: bool| -> Result<i64, AmqpError> {
                let n = integer(v)
                    .ok_or_else(|| invalid(k, format!("{{unacceptable_type,{}}}", type_name(v))))?;
                if n < 0 || (positive && n == 0) {
                    let what = if n < 0 {
                        "value_negative"
                    } else {
                        "value_zero"
                    };
                    return Err(invalid(k, format!("{{{what},{n}}}")));
                }
                Ok(n)
            };
            let text = || -> Result<String, AmqpError> {
                string(v)
                    .ok_or_else(|| invalid(k, format!("{{unacceptable_type,{}}}", type_name(v))))
            };
            match k {
                "x-message-ttl" => out.message_ttl = Some(number(false)?),
                "x-expires" => out.expires = Some(number(true)?),
                "x-max-length" => out.max_length = Some(number(false)? as u64),
                "x-max-length-bytes" => out.max_length_bytes = Some(number(false)? as u64),
                "x-delivery-limit" => {
                    out.delivery_limit = Some(u32::try_from(number(false)?).unwrap_or(u32::MAX))
                }
                "x-dead-letter-exchange" => out.dead_letter_exchange = Some(text()?),
                "x-dead-letter-routing-key" => out.dead_letter_routing_key = Some(text()?),
                "x-overflow" => {
                    out.overflow = match text()?.as_str() {
                        "drop-head" => Overflow::DropHead,
                        "reject-publish" => Overflow::RejectPublish,
                        "reject-publish-dlx" => Overflow::RejectPublishDlx,
                        other => {
                            return Err(invalid(k, format!("{{unknown_value,<<\"{other}\">>}}")))
                        }
                    }
                }
                "x-single-active-consumer" => match v {
                    AMQPValue::Boolean(b) => out.single_active_consumer = *b,
                    _ => {
                        return Err(invalid(
                            k,
                            format!("{{unacceptable_type,{}}}", type_name(v)),
                        ))
                    }
                },
                // RabbitMQ accepts 0..=255 (0 is a single level: no ordering by priority).
                "x-max-priority" => {
                    let n = number(false)?;
                    let max = u8::try_from(n)
                        .map_err(|_| invalid(k, format!("{{max_value_exceeded,{n}}}")))?;
                    out.max_priority = Some(max);
                }
                "x-queue-type" => {
                    let t = text()?;
                    if t != "classic" && t != "quorum" {
                        return Err(AmqpError::precondition(format!(
                            "invalid arg 'x-queue-type': '{t}' (Arctern accepts classic and quorum)"
                        )));
                    }
                }
                _ => {}
            }
        }
        if out.dead_letter_routing_key.is_some() && out.dead_letter_exchange.is_none() {
            return Err(invalid(
                "x-dead-letter-routing-key",
                "Key x-dead-letter-routing-key should be specified together with x-dead-letter-exchange"
                    .into(),
            ));
        }
        Ok(out)
    }

    /// Arguments stored by an earlier version are taken as far as they parse.
    pub fn parse_stored(queue: &str, args: &FieldTable) -> QueueArgs {
        QueueArgs::parse(queue, args).unwrap_or_else(|e| {
            tracing::warn!(queue, error = %e.text, "stored queue arguments do not parse; ignoring them");
            QueueArgs::default()
        })
    }
}

/// The per-message TTL of a publish (`expiration` property, milliseconds as a string),
/// refused with 406 when it is not a non-negative integer, as RabbitMQ does.
pub fn message_expiration(expiration: Option<&str>) -> Result<Option<i64>, AmqpError> {
    match expiration {
        None => Ok(None),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(AmqpError::precondition(format!("invalid expiration '{s}'"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::wire::field_table as table;

    #[test]
    fn parses_every_supported_argument() {
        let s = |v: &str| AMQPValue::LongString(v.into());
        let a = QueueArgs::parse(
            "q",
            &table(&[
                ("x-message-ttl", AMQPValue::LongInt(1000)),
                ("x-expires", AMQPValue::ShortInt(5)),
                ("x-max-length", AMQPValue::LongLongInt(10)),
                ("x-max-length-bytes", AMQPValue::LongUInt(4096)),
                ("x-overflow", s("reject-publish-dlx")),
                ("x-dead-letter-exchange", s("dlx")),
                ("x-dead-letter-routing-key", s("dead")),
                ("x-delivery-limit", AMQPValue::ShortShortUInt(3)),
                ("x-queue-type", s("quorum")),
                ("x-queue-mode", s("lazy")),
            ]),
        )
        .unwrap();
        assert_eq!(a.message_ttl, Some(1000));
        assert_eq!(a.expires, Some(5));
        assert_eq!(a.max_length, Some(10));
        assert_eq!(a.max_length_bytes, Some(4096));
        assert_eq!(a.overflow, Overflow::RejectPublishDlx);
        assert_eq!(a.dead_letter_exchange.as_deref(), Some("dlx"));
        assert_eq!(a.dead_letter_routing_key.as_deref(), Some("dead"));
        assert_eq!(a.delivery_limit, Some(3));
    }

    #[test]
    fn refuses_invalid_values_like_rabbitmq() {
        let s = |v: &str| AMQPValue::LongString(v.into());
        let bad = [
            ("x-message-ttl", AMQPValue::LongInt(-1), "value_negative"),
            ("x-expires", AMQPValue::LongInt(0), "value_zero"),
            ("x-max-length", s("ten"), "unacceptable_type"),
            ("x-overflow", s("sometimes"), "unknown_value"),
            ("x-queue-type", s("stream"), "x-queue-type"),
            ("x-max-priority", AMQPValue::LongInt(-1), "value_negative"),
            (
                "x-max-priority",
                AMQPValue::LongInt(256),
                "max_value_exceeded",
            ),
            ("x-max-priority", s("10"), "unacceptable_type"),
            ("x-single-active-consumer", s("true"), "unacceptable_type"),
            (
                "x-single-active-consumer",
                AMQPValue::LongInt(1),
                "unacceptable_type",
            ),
            ("x-max-age", s("1D"), "not supported"),
        ];
        for (k, v, text) in bad {
            let e = QueueArgs::parse("q", &table(&[(k, v)])).unwrap_err();
            assert_eq!(e.code, crate::codes::PRECONDITION_FAILED);
            assert!(e.text.contains(text), "{k}: {}", e.text);
        }
        let e =
            QueueArgs::parse("q", &table(&[("x-dead-letter-routing-key", s("k"))])).unwrap_err();
        assert!(e.text.contains("together with x-dead-letter-exchange"));
    }

    #[test]
    fn priorities_and_single_active_consumer() {
        let a = QueueArgs::parse(
            "q",
            &table(&[
                ("x-max-priority", AMQPValue::ShortShortUInt(10)),
                ("x-single-active-consumer", AMQPValue::Boolean(true)),
            ]),
        )
        .unwrap();
        assert_eq!(a.max_priority, Some(10));
        assert!(a.single_active_consumer);
        assert_eq!(a.priority_of(None), 0);
        assert_eq!(a.priority_of(Some(3)), 3);
        assert_eq!(a.priority_of(Some(200)), 10, "capped at the maximum");
        let edge = QueueArgs::parse("q", &table(&[("x-max-priority", AMQPValue::LongInt(255))]));
        assert_eq!(edge.unwrap().max_priority, Some(255));
        let zero = QueueArgs::parse("q", &table(&[("x-max-priority", AMQPValue::LongInt(0))]));
        assert_eq!(zero.unwrap().priority_of(Some(9)), 0);
        let plain = QueueArgs::default();
        assert_eq!(
            plain.priority_of(Some(9)),
            0,
            "no priorities without x-max-priority"
        );
        assert!(!plain.single_active_consumer);
    }

    #[test]
    fn message_expiration_is_a_non_negative_integer_string() {
        assert_eq!(message_expiration(None).unwrap(), None);
        assert_eq!(message_expiration(Some("60000")).unwrap(), Some(60000));
        assert!(message_expiration(Some("-1")).is_err());
        assert!(message_expiration(Some("soon")).is_err());
    }
}
