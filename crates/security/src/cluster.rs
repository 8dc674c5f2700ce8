//! Cluster membership proofs from a shared secret (`cluster.secret`).
//!
//! A node proves membership with a token: its node id, what the token is for, the time and
//! a fresh nonce, signed with HMAC-SHA256 under the secret. The receiver checks the
//! signature, that the token is for this purpose, that it is at most [`MAX_SKEW_MS`] old
//! or early, and that its nonce was not used before (so a token seen on the wire cannot be
//! replayed on another connection). The secret itself never crosses the network.
//!
//! Format: `v1.<node_id>.<purpose>.<unix_ms>.<nonce hex>.<mac hex>`.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far a token's clock may be from the receiver's.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

/// The shortest secret accepted: 16 bytes (128 bits).
pub const MIN_SECRET_LEN: usize = 16;

/// Bound on remembered nonces: beyond it new tokens are refused until old ones expire,
/// so a flood of valid-looking tokens cannot grow memory without bound.
const MAX_REMEMBERED: usize = 100_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MembershipError {
    #[error("cluster secret is shorter than {MIN_SECRET_LEN} bytes")]
    SecretTooShort,
    #[error("malformed membership token")]
    Malformed,
    #[error("membership token is for '{found}', not '{expected}'")]
    WrongPurpose { expected: String, found: String },
    #[error("membership token is outside the allowed clock skew")]
    Stale,
    #[error("membership token signature does not match the cluster secret")]
    BadSignature,
    #[error("membership token was already used")]
    Replayed,
    #[error("too many membership tokens in flight")]
    Overloaded,
}

/// The cluster secret, and the nonces it has accepted recently.
pub struct ClusterSecret {
    key: Vec<u8>,
    seen: Mutex<HashMap<[u8; 16], u64>>,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    pub fn new(secret: &[u8]) -> Result<ClusterSecret, MembershipError> {
        let trimmed = trim_ascii(secret);
        if trimmed.len() < MIN_SECRET_LEN {
            return Err(MembershipError::SecretTooShort);
        }
        Ok(ClusterSecret {
            key: trimmed.to_vec(),
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// A fresh token for `node_id` to present for `purpose` (e.g. "raft", "kafka",
    /// "amqp-forward"). `purpose` must not contain '.'.
    pub fn prove(&self, node_id: i32, purpose: &str, now_ms: u64) -> String {
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let body = format!("v1.{node_id}.{purpose}.{now_ms}.{}", hex(&nonce));
        let mac = self.mac(body.as_bytes());
        format!("{body}.{}", hex(&mac))
    }

    /// The node id a token proves, if it is valid for `purpose` now and not seen before.
    pub fn verify(&self, token: &str, purpose: &str, now_ms: u64) -> Result<i32, MembershipError> {
        let (body, mac_hex) = token.rsplit_once('.').ok_or(MembershipError::Malformed)?;
        let mut parts = body.split('.');
        let (Some("v1"), Some(node), Some(found), Some(ts), Some(nonce_hex), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(MembershipError::Malformed);
        };
        let node_id: i32 = node.parse().map_err(|_| MembershipError::Malformed)?;
        let ts: u64 = ts.parse().map_err(|_| MembershipError::Malformed)?;
        let nonce: [u8; 16] = unhex(nonce_hex)
            .and_then(|v| v.try_into().ok())
            .ok_or(MembershipError::Malformed)?;
        let mac = unhex(mac_hex).ok_or(MembershipError::Malformed)?;
        let mut check = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        check.update(body.as_bytes());
        check
            .verify_slice(&mac)
            .map_err(|_| MembershipError::BadSignature)?;
        if found != purpose {
            return Err(MembershipError::WrongPurpose {
                expected: purpose.to_string(),
                found: found.to_string(),
            });
        }
        if ts.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(MembershipError::Stale);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, expires| *expires > now_ms);
            if seen.len() >= MAX_REMEMBERED {
                return Err(MembershipError::Overloaded);
            }
        }
        if seen.insert(nonce, ts + MAX_SKEW_MS).is_some() {
            return Err(MembershipError::Replayed);
        }
        Ok(node_id)
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
}

/// Milliseconds since the Unix epoch, for [`ClusterSecret::prove`] and `verify`.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn secret() -> ClusterSecret {
        ClusterSecret::new(b"0123456789abcdef-cluster\n").unwrap()
    }

    #[test]
    fn a_token_proves_its_node_once() {
        let s = secret();
        let t = s.prove(3, "raft", NOW);
        assert_eq!(s.verify(&t, "raft", NOW + 1000), Ok(3));
        assert_eq!(
            s.verify(&t, "raft", NOW + 1000),
            Err(MembershipError::Replayed)
        );
    }

    #[test]
    fn wrong_secret_purpose_or_time_is_refused() {
        let s = secret();
        let other = ClusterSecret::new(b"another-secret-of-16+").unwrap();
        assert_eq!(
            s.verify(&other.prove(1, "raft", NOW), "raft", NOW),
            Err(MembershipError::BadSignature)
        );
        assert!(matches!(
            s.verify(&s.prove(1, "kafka", NOW), "raft", NOW),
            Err(MembershipError::WrongPurpose { .. })
        ));
        assert_eq!(
            s.verify(&s.prove(1, "raft", NOW), "raft", NOW + MAX_SKEW_MS + 1),
            Err(MembershipError::Stale)
        );
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let s = secret();
        let t = s.prove(1, "raft", NOW);
        let forged = t.replacen("v1.1.", "v1.2.", 1);
        assert_eq!(
            s.verify(&forged, "raft", NOW),
            Err(MembershipError::BadSignature)
        );
        for junk in ["", "v1", "v1.1.raft.x.00.00", "....", "v1.1.raft.1.zz.zz"] {
            assert!(s.verify(junk, "raft", NOW).is_err(), "{junk}");
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            ClusterSecret::new(b"  short  ").unwrap_err(),
            MembershipError::SecretTooShort
        );
    }
}
