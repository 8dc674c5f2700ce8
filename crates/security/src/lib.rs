//! Who is at the other end of a connection, over what kind of listener, and how the
//! cluster's own nodes prove that they are members. No I/O here: the transports and the
//! protocol sessions use these types.

pub mod acl;
pub mod cluster;
pub mod password;
pub mod ratelimit;
pub mod scram;

pub use cluster::{ClusterSecret, MembershipError};
pub use scram::{ScramCredential, ScramMechanism};

/// Who a connection acts for once it is set up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// Nobody authenticated: Kafka's `User:ANONYMOUS` (a PLAINTEXT or SSL listener without
    /// a client certificate).
    Anonymous,
    /// An authenticated user: SASL, an AMQP login, or a TLS client certificate's subject.
    User(String),
    /// Another node of this cluster, proven with the cluster secret.
    Node(i32),
}

impl Principal {
    /// The name Kafka's ACLs use (`User:alice`, `User:ANONYMOUS`).
    pub fn kafka_name(&self) -> String {
        match self {
            Principal::Anonymous => "User:ANONYMOUS".to_string(),
            Principal::User(name) => format!("User:{name}"),
            Principal::Node(id) => format!("Node:{id}"),
        }
    }

    pub fn is_node(&self) -> bool {
        matches!(self, Principal::Node(_))
    }
}

/// Kafka's `security.protocol` of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// What TLS told us about the peer: filled by the transport after the handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPeer {
    /// The common name of a verified client certificate's subject (AMQP EXTERNAL and
    /// Kafka's SSL principal use it).
    pub client_cn: Option<String>,
    /// The subject DN of a verified client certificate in RFC 2253 form, most specific
    /// first (`CN=alice,O=Test`): Kafka's default SSL principal, RabbitMQ's
    /// `ssl_cert_login_from = distinguished_name`.
    pub client_subject: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_round_trip() {
        for p in [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ] {
            assert_eq!(SecurityProtocol::parse(p.name()), Some(p));
        }
        assert_eq!(
            SecurityProtocol::parse("sasl_ssl"),
            Some(SecurityProtocol::SaslSsl)
        );
        assert_eq!(SecurityProtocol::parse("TLS"), None);
    }

    #[test]
    fn kafka_names() {
        assert_eq!(Principal::Anonymous.kafka_name(), "User:ANONYMOUS");
        assert_eq!(Principal::User("alice".into()).kafka_name(), "User:alice");
    }
}
