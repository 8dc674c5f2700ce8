//! AMQP reply codes and the one table mapping Arctern's failures to them.

pub const REPLY_SUCCESS: u16 = 200;
pub const NO_ROUTE: u16 = 312;
pub const ACCESS_REFUSED: u16 = 403;
pub const NOT_FOUND: u16 = 404;
pub const RESOURCE_LOCKED: u16 = 405;
pub const PRECONDITION_FAILED: u16 = 406;
pub const CONNECTION_FORCED: u16 = 320;
pub const FRAME_ERROR: u16 = 501;
pub const SYNTAX_ERROR: u16 = 502;
pub const COMMAND_INVALID: u16 = 503;
pub const CHANNEL_ERROR: u16 = 504;
pub const UNEXPECTED_FRAME: u16 = 505;
pub const RESOURCE_ERROR: u16 = 506;
pub const NOT_ALLOWED: u16 = 530;
pub const NOT_IMPLEMENTED: u16 = 540;
pub const INTERNAL_ERROR: u16 = 541;

/// The reply-code name RabbitMQ puts in front of the reply text.
pub fn code_name(code: u16) -> &'static str {
    match code {
        REPLY_SUCCESS => "OK",
        NO_ROUTE => "NO_ROUTE",
        CONNECTION_FORCED => "CONNECTION_FORCED",
        ACCESS_REFUSED => "ACCESS_REFUSED",
        NOT_FOUND => "NOT_FOUND",
        RESOURCE_LOCKED => "RESOURCE_LOCKED",
        PRECONDITION_FAILED => "PRECONDITION_FAILED",
        FRAME_ERROR => "FRAME_ERROR",
        SYNTAX_ERROR => "SYNTAX_ERROR",
        COMMAND_INVALID => "COMMAND_INVALID",
        CHANNEL_ERROR => "CHANNEL_ERROR",
        UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        RESOURCE_ERROR => "RESOURCE_ERROR",
        NOT_ALLOWED => "NOT_ALLOWED",
        NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        _ => "INTERNAL_ERROR",
    }
}

/// Whether a reply code is a connection exception (the spec's "hard errors"); the others
/// close only the channel.
pub fn is_connection_error(code: u16) -> bool {
    matches!(
        code,
        CONNECTION_FORCED
            | FRAME_ERROR
            | SYNTAX_ERROR
            | COMMAND_INVALID
            | CHANNEL_ERROR
            | UNEXPECTED_FRAME
            | RESOURCE_ERROR
            | NOT_ALLOWED
            | NOT_IMPLEMENTED
            | INTERNAL_ERROR
    )
}

/// An AMQP exception: reply code and text (without the code name prefix, added on send).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} - {text}", code_name(*.code))]
pub struct AmqpError {
    pub code: u16,
    pub text: String,
}

impl AmqpError {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        AmqpError {
            code,
            text: text.into(),
        }
    }
    pub fn not_found(text: impl Into<String>) -> Self {
        Self::new(NOT_FOUND, text)
    }
    pub fn precondition(text: impl Into<String>) -> Self {
        Self::new(PRECONDITION_FAILED, text)
    }
    pub fn locked(text: impl Into<String>) -> Self {
        Self::new(RESOURCE_LOCKED, text)
    }
    pub fn refused(text: impl Into<String>) -> Self {
        Self::new(ACCESS_REFUSED, text)
    }
    pub fn internal(text: impl Into<String>) -> Self {
        Self::new(INTERNAL_ERROR, text)
    }
    /// The reply text as sent: `NOT_FOUND - no queue 'q' in vhost '/'`, like RabbitMQ.
    pub fn reply_text(&self) -> String {
        let t = format!("{} - {}", code_name(self.code), self.text);
        // A short string holds at most 255 bytes.
        truncate_utf8(t, 255)
    }
}

pub fn truncate_utf8(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The one table from broker-core failures to AMQP replies. Every storage / replication
/// failure of a publish or declaration is an internal error for the client (541) except
/// the ones a client can act on.
pub fn core_error(e: &arctern_core::CoreError) -> AmqpError {
    use arctern_core::CoreError as E;
    match e {
        E::NotEnoughReplicas(t) | E::NotEnoughReplicasAfterAppend(t) => {
            AmqpError::new(RESOURCE_ERROR, format!("not enough in-sync replicas: {t}"))
        }
        E::MessageTooLarge { .. } | E::RecordBatchTooLarge(_) => {
            AmqpError::precondition(format!("message too large: {e}"))
        }
        E::ShuttingDown => AmqpError::new(CONNECTION_FORCED, "broker is shutting down"),
        other => AmqpError::internal(other.to_string()),
    }
}
