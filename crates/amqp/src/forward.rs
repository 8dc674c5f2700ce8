//! Forwarding a client connection to the node that serves the vhost (see `vhost.rs`).
//!
//! A node that is not the home relays the connection's bytes both ways to the home's AMQP
//! endpoint, after a HAProxy PROXY protocol v1 line naming the client's address: the home
//! applies its rules (the default user only from loopback) to the real client, and accepts
//! that line only from loopback or from a node of the cluster.
//!
//! With `cluster.secret`, the forwarding node first sends a line proving its membership,
//! `ARCTERN-CLUSTER <token>\r\n` (a token for purpose "amqp-forward"), and the home accepts
//! a PROXY line only after a valid one, from whatever address: the address check alone
//! would trust anything that can connect from a node's host.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use arctern_security::cluster::now_ms;
use arctern_security::ClusterSecret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A PROXY v1 line is at most 107 bytes, CRLF included.
const PROXY_LINE_MAX: usize = 107;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The membership line: 8 bytes of prefix (what the home reads first), then the token.
const PROOF_PREFIX: &[u8; 8] = b"ARCTERN-";
const PROOF_LINE_START: &str = "ARCTERN-CLUSTER ";
/// A token is about 150 bytes; anything much longer is not one.
const PROOF_LINE_MAX: usize = 512;
const PROOF_TIMEOUT: Duration = Duration::from_secs(10);
/// Token purpose of forwarded AMQP connections.
pub const PURPOSE: &str = "amqp-forward";

/// Whether the first bytes of a connection start a membership line.
pub fn is_proof_line(first: &[u8]) -> bool {
    first.starts_with(PROOF_PREFIX)
}

/// Reads the rest of a membership line whose first bytes (`start`) were read, checks its
/// token, and reads the next 8 bytes (the PROXY line's start) into `next`. Returns the
/// proven node id; on any failure it logs why (naming the peer) and returns `None`.
pub async fn accept_proof<R: AsyncRead + Unpin>(
    r: &mut R,
    start: &[u8],
    next: &mut [u8; 8],
    secret: Option<&ClusterSecret>,
    peer: SocketAddr,
) -> Option<i32> {
    let Some(secret) = secret else {
        tracing::warn!(%peer, "refused forwarded AMQP connection: it carries a cluster membership proof but this node has no cluster.secret");
        return None;
    };
    let read = async {
        let mut line = start.to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= PROOF_LINE_MAX {
                return Ok(None);
            }
            line.push(r.read_u8().await?);
        }
        Ok::<_, std::io::Error>(Some(line))
    };
    let line = match tokio::time::timeout(PROOF_TIMEOUT, read).await {
        Ok(Ok(Some(line))) => line,
        _ => {
            tracing::warn!(%peer, "refused forwarded AMQP connection: bad cluster membership line");
            return None;
        }
    };
    let token = std::str::from_utf8(&line)
        .ok()
        .and_then(|l| l.strip_suffix("\r\n"))
        .and_then(|l| l.strip_prefix(PROOF_LINE_START));
    let node = match token.map(|t| secret.verify(t, PURPOSE, now_ms())) {
        Some(Ok(node)) => node,
        Some(Err(e)) => {
            tracing::warn!(%peer, reason = %e, "refused forwarded AMQP connection: invalid cluster membership proof");
            return None;
        }
        None => {
            tracing::warn!(%peer, "refused forwarded AMQP connection: bad cluster membership line");
            return None;
        }
    };
    match tokio::time::timeout(PROOF_TIMEOUT, r.read_exact(next)).await {
        Ok(Ok(_)) => Some(node),
        _ => None,
    }
}

/// Whether the first bytes of a connection start a PROXY v1 line.
pub fn is_proxy_line(first: &[u8]) -> bool {
    first.starts_with(b"PROXY ")
}

/// Reads the rest of a PROXY v1 line whose first bytes (`start`) were already read, and
/// returns the client address it names (`None` for `PROXY UNKNOWN` or a malformed line).
pub async fn read_proxy_line<R: AsyncRead + Unpin>(
    r: &mut R,
    start: &[u8],
) -> std::io::Result<Option<SocketAddr>> {
    let mut line = start.to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= PROXY_LINE_MAX {
            return Ok(None);
        }
        line.push(r.read_u8().await?);
    }
    Ok(parse_proxy_line(&line))
}

fn parse_proxy_line(line: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(line).ok()?.strip_suffix("\r\n")?;
    let mut parts = text.split(' ');
    if parts.next()? != "PROXY" {
        return None;
    }
    let family = parts.next()?;
    let src: IpAddr = parts.next()?.parse().ok()?;
    let _dst: IpAddr = parts.next()?.parse().ok()?;
    let sport: u16 = parts.next()?.parse().ok()?;
    let _dport: u16 = parts.next()?.parse().ok()?;
    let family_ok = match family {
        "TCP4" => src.is_ipv4(),
        "TCP6" => src.is_ipv6(),
        _ => false,
    };
    (family_ok && parts.next().is_none()).then_some(SocketAddr::new(src, sport))
}

fn proxy_line(client: SocketAddr, local: SocketAddr) -> String {
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    // Both addresses must be of one family; the destination is informative only.
    let dst = if local.is_ipv4() == client.is_ipv4() {
        local
    } else {
        client
    };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        client.ip(),
        dst.ip(),
        client.port(),
        dst.port()
    )
}

/// Connects to `endpoint` and sends the PROXY line and the bytes already read from the
/// client (`prefix`). The caller relays the rest with [`relay`].
pub async fn connect(
    endpoint: &str,
    client: SocketAddr,
    local: SocketAddr,
    prefix: &[u8],
    proof: Option<String>,
) -> std::io::Result<TcpStream> {
    let mut up = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = up.set_nodelay(true);
    let mut hello = match proof {
        Some(token) => format!("{PROOF_LINE_START}{token}\r\n").into_bytes(),
        None => Vec::new(),
    };
    hello.extend_from_slice(proxy_line(client, local).as_bytes());
    hello.extend_from_slice(prefix);
    up.write_all(&hello).await?;
    Ok(up)
}

/// Copies bytes both ways until either side closes: a TLS client's decrypted bytes go
/// to the home node in plaintext, over the cluster's own network.
pub async fn relay(mut client: arctern_transport::MaybeTls, mut up: TcpStream) {
    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_lines_round_trip_and_bad_ones_are_refused() {
        let c: SocketAddr = "10.1.2.3:40000".parse().expect("addr");
        let l: SocketAddr = "127.0.0.1:5672".parse().expect("addr");
        let line = proxy_line(c, l);
        assert_eq!(line, "PROXY TCP4 10.1.2.3 127.0.0.1 40000 5672\r\n");
        assert_eq!(parse_proxy_line(line.as_bytes()), Some(c));
        let c6: SocketAddr = "[::1]:4000".parse().expect("addr");
        assert_eq!(parse_proxy_line(proxy_line(c6, l).as_bytes()), Some(c6));
        for bad in [
            "PROXY UNKNOWN\r\n",
            "PROXY TCP4 ::1 ::1 1 2\r\n",
            "PROXY TCP4 1.2.3.4 1.2.3.4 99999 2\r\n",
            "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 extra\r\n",
            "PROXY TCP4 1.2.3.4 1.2.3.4 1 2",
        ] {
            assert_eq!(parse_proxy_line(bad.as_bytes()), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn membership_lines_are_checked() {
        let secret = ClusterSecret::new(b"0123456789abcdef-amqp").unwrap();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let token = secret.prove(2, PURPOSE, now_ms());
        let wire = format!("{PROOF_LINE_START}{token}\r\nPROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\n");
        let (start, rest) = wire.as_bytes().split_at(8);
        assert!(is_proof_line(start));
        let mut next = [0u8; 8];
        let mut r = rest;
        let got = accept_proof(&mut r, start, &mut next, Some(&secret), peer).await;
        assert_eq!(got, Some(2));
        assert_eq!(&next, b"PROXY TC");
        // The same line again (a replay), another secret's, no secret here, garbage.
        let mut r = rest;
        assert_eq!(
            accept_proof(&mut r, start, &mut next, Some(&secret), peer).await,
            None
        );
        let other = ClusterSecret::new(b"another-secret-of-16+").unwrap();
        let forged = format!(
            "{PROOF_LINE_START}{}\r\n",
            other.prove(2, PURPOSE, now_ms())
        );
        let mut r = &forged.as_bytes()[8..];
        assert_eq!(
            accept_proof(&mut r, start, &mut next, Some(&secret), peer).await,
            None
        );
        let mut r = rest;
        assert_eq!(
            accept_proof(&mut r, start, &mut next, None, peer).await,
            None
        );
        let junk = [b'x'; 600];
        let mut r = &junk[..];
        assert_eq!(
            accept_proof(&mut r, start, &mut next, Some(&secret), peer).await,
            None
        );
    }

    #[tokio::test]
    async fn an_overlong_line_is_refused() {
        let long = [b'1'; 200];
        let mut r = &long[..];
        assert_eq!(
            read_proxy_line(&mut r, b"PROXY ").await.expect("read"),
            None
        );
    }
}
