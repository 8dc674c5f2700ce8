//! Named AMQP 0-9-1 class and method ids, for the (class, method) a `connection.close` or
//! `channel.close` names as its cause; decoded methods are matched on `amq-protocol`'s
//! enums, never on these numbers.

use amq_protocol::protocol::AMQPClass;

pub const CONNECTION_CLASS: u16 = 10;
pub const CHANNEL_CLASS: u16 = 20;
pub const EXCHANGE_CLASS: u16 = 40;
pub const QUEUE_CLASS: u16 = 50;
/// The basic class id (also the class of every content header).
pub const BASIC_CLASS: u16 = 60;
pub const CONFIRM_CLASS: u16 = 85;
pub const TX_CLASS: u16 = 90;

/// A (class id, method id) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodId {
    pub class: u16,
    pub method: u16,
}

impl MethodId {
    /// No method caused the close (a frame error, a timeout, a server-side event).
    pub const NONE: MethodId = MethodId::new(0, 0);

    pub const fn new(class: u16, method: u16) -> MethodId {
        MethodId { class, method }
    }

    /// The ids of a decoded method.
    pub fn of(m: &AMQPClass) -> MethodId {
        MethodId::new(m.get_amqp_class_id(), m.get_amqp_method_id())
    }
}

pub const BASIC_QOS: MethodId = MethodId::new(BASIC_CLASS, 10);
pub const BASIC_PUBLISH: MethodId = MethodId::new(BASIC_CLASS, 40);
pub const TX_COMMIT: MethodId = MethodId::new(TX_CLASS, 20);

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::{basic, channel, confirm, connection, exchange, queue, tx};

    #[test]
    fn named_ids_match_the_protocol_crate() {
        let publish = AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish::default()));
        assert_eq!(MethodId::of(&publish), BASIC_PUBLISH);
        let qos = AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos::default()));
        assert_eq!(MethodId::of(&qos), BASIC_QOS);
        let commit = AMQPClass::Tx(tx::AMQPMethod::Commit(tx::Commit {}));
        assert_eq!(MethodId::of(&commit), TX_COMMIT);
        let classes = [
            (
                AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                CONNECTION_CLASS,
            ),
            (
                AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                CHANNEL_CLASS,
            ),
            (
                AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
                EXCHANGE_CLASS,
            ),
            (
                AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})),
                QUEUE_CLASS,
            ),
            (
                AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                CONFIRM_CLASS,
            ),
        ];
        for (m, class) in classes {
            assert_eq!(MethodId::of(&m).class, class);
        }
    }
}
