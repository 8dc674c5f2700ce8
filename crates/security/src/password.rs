//! RabbitMQ's password hashes (`rabbit_password_hashing_sha256`, its default):
//! base64(salt ++ sha256(salt ++ password)) with a random 4-byte salt. Definitions exported
//! from RabbitMQ carry hashes in this form, so they import unchanged.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut salt);
    hash_with_salt(salt, password)
}

pub fn hash_with_salt(salt: [u8; 4], password: &str) -> String {
    let mut out = salt.to_vec();
    out.extend_from_slice(
        &Sha256::new()
            .chain_update(salt)
            .chain_update(password)
            .finalize(),
    );
    STANDARD.encode(out)
}

/// Whether `password` matches `hash` (constant time in the digest comparison).
pub fn verify_password(hash: &str, password: &str) -> bool {
    let Ok(raw) = STANDARD.decode(hash.trim()) else {
        return false;
    };
    if raw.len() != 4 + 32 {
        return false;
    }
    let (salt, digest) = raw.split_at(4);
    let computed = Sha256::new()
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    constant_time_eq(&computed, digest)
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rabbitmq() {
        // `rabbitmqctl hash_password` style: salt 0x908dc60a, password "test12".
        let h = hash_with_salt([0x90, 0x8d, 0xc6, 0x0a], "test12");
        assert!(verify_password(&h, "test12"));
        assert!(!verify_password(&h, "test13"));
    }

    #[test]
    fn fresh_hashes_verify_and_differ() {
        let a = hash_password("s3cret");
        let b = hash_password("s3cret");
        assert!(verify_password(&a, "s3cret") && verify_password(&b, "s3cret"));
        assert!(!verify_password(&a, ""));
        assert!(!verify_password("not base64!", "s3cret"));
        assert!(!verify_password("", ""));
    }
}
