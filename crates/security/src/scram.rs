//! SCRAM credentials (RFC 5802, RFC 7677): what is stored for a user, how it is derived
//! from a password, and the hash/HMAC of each mechanism for the exchange itself.

use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// Kafka's bounds on the iteration count (`ScramMechanism.minIterations` is 4096).
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;
/// What Arctern's own tools use.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// The stored form: salt, iteration count, StoredKey = H(ClientKey), ServerKey.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(name: &str) -> Option<ScramMechanism> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// Kafka's wire code in Alter/DescribeUserScramCredentials.
    pub fn kafka_code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_code(code: i8) -> Option<ScramMechanism> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut m = Hmac::<Sha512>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// SaltedPassword = Hi(password, salt, i) (PBKDF2 with this mechanism's HMAC).
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            ScramMechanism::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }

    /// The stored credential for `password` with this salt and iteration count.
    pub fn derive(self, password: &str, salt: &[u8], iterations: u32) -> ScramCredential {
        let salted = self.salted_password(password.as_bytes(), salt, iterations);
        let client_key = self.hmac(&salted, b"Client Key");
        ScramCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key: self.hash(&client_key),
            server_key: self.hmac(&salted, b"Server Key"),
        }
    }

    /// A credential with a fresh random salt (as long as the hash, like Kafka's tools).
    pub fn derive_fresh(self, password: &str, iterations: u32) -> ScramCredential {
        let mut salt = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut salt);
        self.derive(password, &salt, iterations)
    }

    /// Whether `password` is the one `cred` was derived from (for PLAIN-style logins of a
    /// user that has only SCRAM credentials).
    pub fn verify_password(self, cred: &ScramCredential, password: &str) -> bool {
        if !(1..=MAX_ITERATIONS * 4).contains(&cred.iterations) {
            return false;
        }
        let derived = self.derive(password, &cred.salt, cred.iterations);
        crate::password::constant_time_eq(&derived.stored_key, &cred.stored_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677 section 3: user "user", password "pencil", i=4096,
        // salt = base64 "W22ZaJ0SNY7soEsUEjb6gQ==", ServerSignature "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        let m = ScramMechanism::Sha256;
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = m.derive("pencil", &salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_signature = m.hmac(&cred.server_key, auth_message.as_bytes());
        assert_eq!(
            STANDARD.encode(server_signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert!(m.verify_password(&cred, "pencil"));
        assert!(!m.verify_password(&cred, "pencil2"));
    }

    #[test]
    fn names_and_codes() {
        for m in ScramMechanism::ALL {
            assert_eq!(ScramMechanism::parse(m.name()), Some(m));
            assert_eq!(ScramMechanism::from_kafka_code(m.kafka_code()), Some(m));
        }
        let c = ScramMechanism::Sha512.derive_fresh("pw", 4096);
        assert_eq!(c.stored_key.len(), 64);
        assert!(ScramMechanism::Sha512.verify_password(&c, "pw"));
    }
}
