//! Accepting one connection: the TLS handshake on a TLS listener, the ClientHello check on
//! a plaintext one.

use std::net::SocketAddr;
use std::time::Duration;

use arctern_security::TlsPeer;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::peer::peer_from_der;
use crate::stream::MaybeTls;
use crate::tls::ReloadableTls;

/// The longest a TLS handshake may take (and the longest a plaintext listener waits for
/// the first bytes to tell a stray ClientHello).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Accepted {
    pub stream: MaybeTls,
    /// Set on a TLS connection; `client_subject` only with a verified client certificate.
    pub tls: Option<TlsPeer>,
}

/// Sets the connection up; `None` means it was closed (and logged). `listener` names the
/// listener in log lines.
pub async fn accept(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<&ReloadableTls>,
    listener: &str,
) -> Option<Accepted> {
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        // Kafka's first byte is a frame length's top byte and AMQP's is 'A' (or 'P' for a
        // PROXY line): neither is 0x16, a TLS handshake record. A client that says nothing
        // for a while is left to the protocol's own timeouts.
        let mut first = [0u8; 2];
        if let Ok(Ok(n)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
            if n >= 1 && first[0] == 0x16 && (n < 2 || first[1] == 0x03) {
                tracing::warn!(%peer, listener, "TLS handshake on a plaintext listener; closing");
                return None;
            }
        }
        return Some(Accepted {
            stream: MaybeTls::Plain(stream),
            tls: None,
        });
    };
    let acceptor = TlsAcceptor::from(tls.config());
    let tls_stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%peer, listener, error = %e, "TLS handshake failed; closing");
            return None;
        }
        Err(_) => {
            tracing::warn!(%peer, listener, "TLS handshake timed out; closing");
            return None;
        }
    };
    let peer_id = tls_stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|c| peer_from_der(c))
        .unwrap_or_default();
    Some(Accepted {
        stream: MaybeTls::Tls(Box::new(tls_stream)),
        tls: Some(peer_id),
    })
}

#[cfg(test)]
mod tests;
