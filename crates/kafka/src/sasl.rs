//! Kafka SASL, server side, sans-IO: which mechanisms a listener offers, and one
//! connection's authentication exchange (PLAIN, SCRAM-SHA-256/512, ARCTERN-CLUSTER).
//!
//! The connection loop (server.rs) feeds SaslHandshake's mechanism and each
//! SaslAuthenticate's bytes in here and turns the answers into Kafka responses. Failure
//! messages follow Kafka's `SaslServerAuthenticator`: SCRAM failures never say why (an
//! unknown user and a wrong password look the same, down to a deterministic fake salt for
//! unknown users), PLAIN failures use `PlainSaslServer`'s texts.

use std::collections::BTreeMap;

use arctern_metadata::UserRecord;
use arctern_security::{ClusterSecret, Principal, ScramCredential, ScramMechanism};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::{Rng, RngCore};
use std::time::Instant;

pub const PLAIN: &str = "PLAIN";
pub const CLUSTER: &str = "ARCTERN-CLUSTER";
/// What `sasl.enabled.mechanisms` defaults to.
pub const DEFAULT_MECHANISMS: &[&str] = &[PLAIN, "SCRAM-SHA-256", "SCRAM-SHA-512"];
/// Largest SASL token accepted (any mechanism's messages are far smaller).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Kafka's `sasl.server.max.receive.size` default: the largest frame read from a
/// connection that has not authenticated yet.
pub const MAX_UNAUTHENTICATED_FRAME: usize = 524_288;
/// Purpose string of the cluster tokens nodes send to each other's Kafka listeners.
pub const CLUSTER_PURPOSE: &str = "kafka";

/// The mechanisms a broker offers (from `sasl.enabled.mechanisms`) and the key that makes
/// the fake salts of unknown SCRAM users.
#[derive(Debug, Clone)]
pub struct SaslConfig {
    pub enabled: Vec<String>,
    /// `connections.max.reauth.ms`: 0 (Kafka's default) disables re-authentication.
    pub reauth_ms: u64,
    fake_salt_key: [u8; 32],
}

impl Default for SaslConfig {
    fn default() -> Self {
        SaslConfig::new(DEFAULT_MECHANISMS.iter().map(|m| m.to_string()).collect())
    }
}

/// A mechanism name `sasl.enabled.mechanisms` may list.
pub fn is_known_mechanism(name: &str) -> bool {
    name == PLAIN || ScramMechanism::parse(name).is_some()
}

impl SaslConfig {
    pub fn new(enabled: Vec<String>) -> SaslConfig {
        let mut fake_salt_key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut fake_salt_key);
        SaslConfig {
            enabled,
            reauth_ms: 0,
            fake_salt_key,
        }
    }

    /// The mechanisms offered on a listener: the enabled ones if it is a SASL listener,
    /// plus ARCTERN-CLUSTER on every listener when the cluster has a secret.
    pub fn offered(&self, sasl_listener: bool, cluster: bool) -> Vec<String> {
        let mut out: Vec<String> = if sasl_listener {
            self.enabled.clone()
        } else {
            Vec::new()
        };
        if cluster {
            out.push(CLUSTER.to_string());
        }
        out
    }
}

/// What a SASL step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes; the exchange goes on.
    Continue(Vec<u8>),
    /// Send these bytes; the connection is now `principal`.
    Done {
        response: Vec<u8>,
        principal: Principal,
    },
    /// Send `message` with SASL_AUTHENTICATION_FAILED, then close.
    Failed { message: String },
}

fn failed(message: impl Into<String>) -> Step {
    Step::Failed {
        message: message.into(),
    }
}

/// One authentication exchange, started by a successful SaslHandshake.
#[derive(Debug)]
pub enum Exchange {
    Plain,
    Cluster,
    Scram(ScramServer),
}

impl Exchange {
    /// The exchange for `mechanism` if it is among `offered`.
    pub fn start(mechanism: &str, offered: &[String]) -> Option<Exchange> {
        if !offered.iter().any(|m| m == mechanism) {
            return None;
        }
        if mechanism == PLAIN {
            Some(Exchange::Plain)
        } else if mechanism == CLUSTER {
            Some(Exchange::Cluster)
        } else {
            ScramMechanism::parse(mechanism).map(|m| Exchange::Scram(ScramServer::new(m)))
        }
    }

    pub fn mechanism(&self) -> &'static str {
        match self {
            Exchange::Plain => PLAIN,
            Exchange::Cluster => CLUSTER,
            Exchange::Scram(s) => s.mechanism.name(),
        }
    }

    /// Runs one client token through the exchange.
    pub fn step(
        &mut self,
        token: &[u8],
        users: &BTreeMap<String, UserRecord>,
        config: &SaslConfig,
        secret: Option<&ClusterSecret>,
        now_ms: u64,
    ) -> Step {
        if token.len() > MAX_TOKEN_BYTES {
            return failed(format!(
                "Authentication failed: SASL token of {} bytes exceeds {MAX_TOKEN_BYTES}",
                token.len()
            ));
        }
        match self {
            Exchange::Plain => plain(token, users),
            Exchange::Cluster => cluster(token, secret, now_ms),
            Exchange::Scram(s) => s.step(token, users, config),
        }
    }
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`.
fn plain(token: &[u8], users: &BTreeMap<String, UserRecord>) -> Step {
    let Ok(text) = std::str::from_utf8(token) else {
        return failed("Invalid SASL/PLAIN response: not UTF-8");
    };
    let parts: Vec<&str> = text.split('\0').collect();
    if parts.len() != 3 {
        return failed(format!(
            "Invalid SASL/PLAIN response: expected 3 tokens, got {}",
            parts.len()
        ));
    }
    let (authzid, user, password) = (parts[0], parts[1], parts[2]);
    if user.is_empty() {
        return failed("Authentication failed: username not specified");
    }
    if password.is_empty() {
        return failed("Authentication failed: password not specified");
    }
    let ok = users.get(user).is_some_and(|u| u.check_password(password));
    if !ok {
        return failed("Authentication failed: Invalid username or password");
    }
    if !authzid.is_empty() && authzid != user {
        return failed("Authentication failed: Client requested an authorization id that is different from username");
    }
    Step::Done {
        response: Vec::new(),
        principal: Principal::User(user.to_string()),
    }
}

/// ARCTERN-CLUSTER: the token is a cluster membership proof for the purpose "kafka".
fn cluster(token: &[u8], secret: Option<&ClusterSecret>, now_ms: u64) -> Step {
    let generic = "Authentication failed during authentication due to invalid credentials with SASL mechanism ARCTERN-CLUSTER";
    let Some(secret) = secret else {
        return failed(generic);
    };
    let Ok(token) = std::str::from_utf8(token) else {
        return failed(generic);
    };
    match secret.verify(token, CLUSTER_PURPOSE, now_ms) {
        Ok(id) => Step::Done {
            response: Vec::new(),
            principal: Principal::Node(id),
        },
        Err(e) => {
            tracing::debug!(error = %e, "cluster membership proof refused");
            failed(generic)
        }
    }
}

#[derive(Debug)]
enum ScramState {
    ClientFirst,
    ClientFinal(Box<ServerFirstSent>),
    Complete,
}

#[derive(Debug)]
struct ServerFirstSent {
    user: String,
    /// `None` for an unknown user: the exchange goes on with a fake salt and always fails.
    credential: Option<ScramCredential>,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// RFC 5802 / RFC 7677 server over a stored [`ScramCredential`].
#[derive(Debug)]
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: ScramState,
}

/// Longest user name or nonce accepted in a SCRAM message.
const MAX_SCRAM_FIELD: usize = 1024;

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer {
            mechanism,
            state: ScramState::ClientFirst,
        }
    }

    fn generic_failure(&self) -> Step {
        // Kafka's text for every SaslException: it must not reveal whether the user exists.
        failed(format!(
            "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
            self.mechanism.name()
        ))
    }

    pub fn step(
        &mut self,
        token: &[u8],
        users: &BTreeMap<String, UserRecord>,
        config: &SaslConfig,
    ) -> Step {
        let state = std::mem::replace(&mut self.state, ScramState::Complete);
        let result = match state {
            ScramState::ClientFirst => self.client_first(token, users, config),
            ScramState::ClientFinal(sent) => self.client_final(token, *sent),
            ScramState::Complete => Err(self.generic_failure()),
        };
        match result {
            Ok(step) => step,
            Err(step) => {
                self.state = ScramState::Complete;
                step
            }
        }
    }

    fn client_first(
        &mut self,
        token: &[u8],
        users: &BTreeMap<String, UserRecord>,
        config: &SaslConfig,
    ) -> Result<Step, Step> {
        let text = std::str::from_utf8(token).map_err(|_| self.generic_failure())?;
        let first = parse_client_first(text).ok_or_else(|| self.generic_failure())?;
        if !first.authzid.is_empty() && first.authzid != first.user {
            return Err(failed("Authentication failed: Client requested an authorization id that is different from username"));
        }
        let credential = users
            .get(&first.user)
            .and_then(|u| u.scram.get(self.mechanism.name()))
            .filter(|c| {
                c.iterations >= arctern_security::scram::MIN_ITERATIONS
                    && c.stored_key.len() == self.mechanism.hash(b"").len()
            })
            .cloned();
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (
                // Same user name, same fake salt: probing cannot tell it from a real one.
                ScramMechanism::Sha256.hmac(&config.fake_salt_key, first.user.as_bytes()),
                arctern_security::scram::DEFAULT_ITERATIONS,
            ),
        };
        let nonce = format!("{}{}", first.nonce, server_nonce());
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        let response = server_first.clone().into_bytes();
        self.state = ScramState::ClientFinal(Box::new(ServerFirstSent {
            user: first.user,
            credential,
            gs2_header: first.gs2_header,
            client_first_bare: first.bare,
            server_first,
            nonce,
        }));
        Ok(Step::Continue(response))
    }

    fn client_final(&mut self, token: &[u8], sent: ServerFirstSent) -> Result<Step, Step> {
        let text = std::str::from_utf8(token).map_err(|_| self.generic_failure())?;
        let (without_proof, proof_b64) = text
            .rsplit_once(",p=")
            .ok_or_else(|| self.generic_failure())?;
        let mut fields = without_proof.split(',');
        let channel = fields
            .next()
            .and_then(|f| f.strip_prefix("c="))
            .ok_or_else(|| self.generic_failure())?;
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or_else(|| self.generic_failure())?;
        // The channel binding must echo the gs2 header (no binding data: `n` or `y`).
        if B64.decode(channel).ok().as_deref() != Some(sent.gs2_header.as_bytes()) {
            return Err(self.generic_failure());
        }
        if nonce != sent.nonce {
            return Err(self.generic_failure());
        }
        let proof = B64.decode(proof_b64).map_err(|_| self.generic_failure())?;
        let Some(cred) = sent.credential else {
            return Err(self.generic_failure());
        };
        let auth_message = format!(
            "{},{},{}",
            sent.client_first_bare, sent.server_first, without_proof
        );
        let m = self.mechanism;
        let signature = m.hmac(&cred.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(self.generic_failure());
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        if !ct_eq(&m.hash(&client_key), &cred.stored_key) {
            return Err(self.generic_failure());
        }
        let server_signature = m.hmac(&cred.server_key, auth_message.as_bytes());
        self.state = ScramState::Complete;
        Ok(Step::Done {
            response: format!("v={}", B64.encode(server_signature)).into_bytes(),
            principal: Principal::User(sent.user),
        })
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Printable, comma-free, as RFC 5802 requires of a nonce.
fn server_nonce() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    (0..32)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
struct ClientFirst {
    gs2_header: String,
    authzid: String,
    user: String,
    nonce: String,
    bare: String,
}

/// `gs2-header client-first-message-bare`; `None` if malformed, if it asks for channel
/// binding (`p=`), or if it asks for Kafka's delegation-token authentication.
fn parse_client_first(text: &str) -> Option<ClientFirst> {
    let (cb_flag, rest) = text.split_once(',')?;
    if cb_flag != "n" && cb_flag != "y" {
        return None;
    }
    let (authz, bare) = rest.split_once(',')?;
    let authzid = if authz.is_empty() {
        String::new()
    } else {
        decode_saslname(authz.strip_prefix("a=")?)?
    };
    let gs2_header = format!("{cb_flag},{authz},");
    let mut fields = bare.split(',');
    let user = decode_saslname(fields.next()?.strip_prefix("n=")?)?;
    let nonce = fields.next()?.strip_prefix("r=")?;
    if user.is_empty()
        || user.len() > MAX_SCRAM_FIELD
        || nonce.is_empty()
        || nonce.len() > MAX_SCRAM_FIELD
        || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return None;
    }
    for ext in fields {
        let (key, value) = ext.split_once('=')?;
        // `m=` is reserved for mandatory extensions nobody defines; Kafka's `tokenauth`
        // means delegation tokens, which Arctern does not have.
        if key == "m" || (key == "tokenauth" && value.eq_ignore_ascii_case("true")) {
            return None;
        }
    }
    Some(ClientFirst {
        gs2_header,
        authzid,
        user,
        nonce: nonce.to_string(),
        bare: bare.to_string(),
    })
}

/// RFC 5802 saslname: `=2C` is `,`, `=3D` is `=`, any other `=` is an error.
fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3)?;
        match esc {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// What the connection loop does with a request, given the SASL state.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// An ordinary request: serve it.
    Serve,
    /// SaslHandshake or SaslAuthenticate: answer through [`SaslSession`].
    Sasl,
    /// Kafka closes the connection without an answer (a request before authentication).
    Close(&'static str),
}

#[derive(Debug)]
enum SessionState {
    Initial,
    /// After a successful handshake; `raw` for SaslHandshake v0 (unframed tokens follow).
    Exchanging {
        exchange: Exchange,
        raw: bool,
        /// Re-authentication (KIP-368): the principal must stay the same.
        reauth: Option<Principal>,
    },
    Authenticated {
        principal: Principal,
        mechanism: &'static str,
        /// `connections.max.reauth.ms` after authentication; later requests close the
        /// connection unless the client re-authenticates first.
        expires: Option<Instant>,
    },
}

/// The answer to a SaslHandshake.
#[derive(Debug, PartialEq, Eq)]
pub struct HandshakeAnswer {
    pub error_code: i16,
    pub mechanisms: Vec<String>,
    /// Close after sending (Kafka does for an unsupported mechanism or a handshake in the
    /// middle of an exchange).
    pub close: bool,
}

/// The answer to a SaslAuthenticate (or a raw v0 token).
#[derive(Debug, PartialEq, Eq)]
pub struct AuthAnswer {
    pub error_code: i16,
    pub error_message: Option<String>,
    pub auth_bytes: Vec<u8>,
    /// Set once the exchange succeeded: the connection acts for this principal from now on.
    pub principal: Option<Principal>,
    pub close: bool,
    /// SaslAuthenticate v1+ `session_lifetime_ms` (0: no re-authentication needed).
    pub session_lifetime_ms: i64,
}

const ILLEGAL_SASL_STATE: i16 = 34;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// One connection's SASL state, following Kafka's `SaslServerAuthenticator`: on a SASL
/// listener only ApiVersions, SaslHandshake and SaslAuthenticate are served until the
/// client has authenticated.
#[derive(Debug)]
pub struct SaslSession {
    required: bool,
    offered: Vec<String>,
    /// `connections.max.reauth.ms` (0: sessions last as long as the connection).
    reauth_ms: u64,
    state: SessionState,
}

impl SaslSession {
    /// `required`: a SASL_PLAINTEXT/SASL_SSL listener. `offered`: see [`SaslConfig::offered`].
    pub fn new(required: bool, offered: Vec<String>, reauth_ms: u64) -> SaslSession {
        SaslSession {
            required,
            offered,
            reauth_ms,
            state: SessionState::Initial,
        }
    }

    pub fn authenticated(&self) -> bool {
        matches!(self.state, SessionState::Authenticated { .. })
    }

    /// Whether the connection still has to authenticate before ordinary requests.
    pub fn pending(&self) -> bool {
        match self.state {
            SessionState::Authenticated { .. } => false,
            SessionState::Exchanging { .. } => true,
            SessionState::Initial => self.required,
        }
    }

    /// After a v0 handshake: the next frame is a bare SASL token, not a Kafka request.
    pub fn expects_raw(&self) -> bool {
        matches!(self.state, SessionState::Exchanging { raw: true, .. })
    }

    pub fn mechanism(&self) -> Option<&'static str> {
        match &self.state {
            SessionState::Exchanging { exchange, .. } => Some(exchange.mechanism()),
            _ => None,
        }
    }

    pub fn gate(
        &self,
        api_key: arctern_kafka_wire::kafka_protocol::messages::ApiKey,
        now: Instant,
    ) -> Gate {
        use arctern_kafka_wire::kafka_protocol::messages::ApiKey;
        let sasl = matches!(api_key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
        match self.state {
            _ if sasl => Gate::Sasl,
            // Kafka closes a connection whose session expired without re-authentication.
            SessionState::Authenticated {
                expires: Some(t), ..
            } if now >= t => Gate::Close("SASL session expired (connections.max.reauth.ms)"),
            SessionState::Exchanging { .. } => {
                Gate::Close("unexpected request during SASL authentication")
            }
            SessionState::Initial if self.required && api_key != ApiKey::ApiVersions => {
                Gate::Close("unexpected request during SASL handshake")
            }
            _ => Gate::Serve,
        }
    }

    pub fn handshake(&mut self, mechanism: &str, version: i16) -> HandshakeAnswer {
        let answer = |error_code, close| HandshakeAnswer {
            error_code,
            mechanisms: self.offered.clone(),
            close,
        };
        match self.state {
            // A second handshake mid-exchange: Kafka answers and closes.
            SessionState::Exchanging { .. } => answer(ILLEGAL_SASL_STATE, true),
            // Without `connections.max.reauth.ms` there is no re-authentication (KIP-368):
            // Kafka's request handler answers this.
            SessionState::Authenticated { .. } if self.reauth_ms == 0 => {
                answer(ILLEGAL_SASL_STATE, false)
            }
            SessionState::Authenticated {
                ref principal,
                mechanism: previous,
                ..
            } => {
                if mechanism != previous {
                    return answer(UNSUPPORTED_SASL_MECHANISM, true);
                }
                match Exchange::start(mechanism, &self.offered) {
                    None => answer(UNSUPPORTED_SASL_MECHANISM, true),
                    Some(exchange) => {
                        self.state = SessionState::Exchanging {
                            exchange,
                            raw: false,
                            reauth: Some(principal.clone()),
                        };
                        answer(0, false)
                    }
                }
            }
            // Not a SASL listener and no cluster secret: nothing to negotiate.
            SessionState::Initial if self.offered.is_empty() => answer(ILLEGAL_SASL_STATE, false),
            SessionState::Initial => match Exchange::start(mechanism, &self.offered) {
                None => answer(UNSUPPORTED_SASL_MECHANISM, true),
                Some(exchange) => {
                    self.state = SessionState::Exchanging {
                        exchange,
                        raw: version == 0,
                        reauth: None,
                    };
                    answer(0, false)
                }
            },
        }
    }

    /// Runs a client token. `throttled`: the login limiter refused this address, so the
    /// exchange fails without looking at the credentials.
    pub fn authenticate(
        &mut self,
        token: &[u8],
        users: &BTreeMap<String, UserRecord>,
        config: &SaslConfig,
        secret: Option<&ClusterSecret>,
        throttled: bool,
        now: Instant,
    ) -> AuthAnswer {
        let fail = |code, message: String, close| AuthAnswer {
            error_code: code,
            error_message: Some(message),
            auth_bytes: Vec::new(),
            principal: None,
            close,
            session_lifetime_ms: 0,
        };
        let exchange = match &mut self.state {
            SessionState::Initial => {
                return fail(
                    ILLEGAL_SASL_STATE,
                    "SaslAuthenticate before a successful SaslHandshake".into(),
                    true,
                )
            }
            SessionState::Authenticated { .. } => {
                return fail(
                    ILLEGAL_SASL_STATE,
                    "the connection has already authenticated".into(),
                    false,
                )
            }
            SessionState::Exchanging { exchange, .. } => exchange,
        };
        let step = if throttled {
            failed("Authentication failed: too many failed attempts from this address, retry later")
        } else {
            exchange.step(
                token,
                users,
                config,
                secret,
                arctern_security::cluster::now_ms(),
            )
        };
        match step {
            Step::Continue(bytes) => AuthAnswer {
                error_code: 0,
                error_message: None,
                auth_bytes: bytes,
                principal: None,
                close: false,
                session_lifetime_ms: 0,
            },
            Step::Done {
                response,
                principal,
            } => {
                let (mechanism, reauth) = match &self.state {
                    SessionState::Exchanging {
                        exchange, reauth, ..
                    } => (exchange.mechanism(), reauth.clone()),
                    _ => (PLAIN, None),
                };
                if let Some(previous) = reauth {
                    if previous != principal {
                        self.state = SessionState::Initial;
                        return fail(
                            SASL_AUTHENTICATION_FAILED,
                            format!(
                                "Cannot change principals during re-authentication from {}: {}",
                                previous.kafka_name(),
                                principal.kafka_name()
                            ),
                            true,
                        );
                    }
                }
                let expires = (self.reauth_ms > 0)
                    .then(|| now + std::time::Duration::from_millis(self.reauth_ms));
                self.state = SessionState::Authenticated {
                    principal: principal.clone(),
                    mechanism,
                    expires,
                };
                AuthAnswer {
                    error_code: 0,
                    error_message: None,
                    auth_bytes: response,
                    principal: Some(principal),
                    close: false,
                    session_lifetime_ms: i64::try_from(self.reauth_ms).unwrap_or(i64::MAX),
                }
            }
            Step::Failed { message } => {
                self.state = SessionState::Initial;
                fail(SASL_AUTHENTICATION_FAILED, message, true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> BTreeMap<String, UserRecord> {
        let mut m = BTreeMap::new();
        m.insert(
            "alice".to_string(),
            UserRecord::with_password("secret", vec![]),
        );
        // Only SCRAM credentials, as AlterUserScramCredentials makes them.
        let mut bob = UserRecord::default();
        bob.scram.insert(
            "SCRAM-SHA-512".into(),
            ScramMechanism::Sha512.derive_fresh("pw", 4096),
        );
        m.insert("bob".to_string(), bob);
        m
    }

    fn run(mech: &str, token: &[u8]) -> Step {
        let config = SaslConfig::default();
        let mut ex = Exchange::start(mech, &config.enabled).expect("offered");
        ex.step(token, &users(), &config, None, 0)
    }

    #[test]
    fn plain() {
        assert!(
            matches!(run("PLAIN", b"\0alice\0secret"), Step::Done { principal: Principal::User(u), .. } if u == "alice")
        );
        assert!(matches!(
            run("PLAIN", b"alice\0alice\0secret"),
            Step::Done { .. }
        ));
        assert!(matches!(run("PLAIN", b"bob\0bob\0pw"), Step::Done { .. }));
        let wrong = run("PLAIN", b"\0alice\0nope");
        let unknown = run("PLAIN", b"\0carol\0secret");
        assert_eq!(wrong, unknown);
        assert!(matches!(wrong, Step::Failed { .. }));
        assert!(matches!(
            run("PLAIN", b"mallory\0alice\0secret"),
            Step::Failed { .. }
        ));
        assert!(matches!(
            run("PLAIN", b"alice\0secret"),
            Step::Failed { .. }
        ));
        assert!(matches!(run("PLAIN", b"\0alice\0"), Step::Failed { .. }));
        assert!(matches!(
            run("PLAIN", &vec![b'a'; MAX_TOKEN_BYTES + 1]),
            Step::Failed { .. }
        ));
    }

    #[test]
    fn session_rules() {
        use arctern_kafka_wire::kafka_protocol::messages::ApiKey;
        let c = SaslConfig::default();
        let mut s = SaslSession::new(true, c.offered(true, false), 0);
        assert_eq!(s.gate(ApiKey::ApiVersions, Instant::now()), Gate::Serve);
        assert!(matches!(
            s.gate(ApiKey::Metadata, Instant::now()),
            Gate::Close(_)
        ));
        assert_eq!(s.gate(ApiKey::SaslAuthenticate, Instant::now()), Gate::Sasl);
        // SaslAuthenticate before a handshake.
        let a = s.authenticate(
            b"\0alice\0secret",
            &users(),
            &c,
            None,
            false,
            Instant::now(),
        );
        assert_eq!((a.error_code, a.close), (34, true));
        // Unknown mechanism.
        let h = s.handshake("GSSAPI", 1);
        assert_eq!((h.error_code, h.close), (33, true));
        assert_eq!(h.mechanisms, c.enabled);
        let h = s.handshake("PLAIN", 1);
        assert_eq!(h.error_code, 0);
        assert!(matches!(
            s.gate(ApiKey::ApiVersions, Instant::now()),
            Gate::Close(_)
        ));
        // Throttled: refused without a credential check.
        let mut t = SaslSession::new(true, c.offered(true, false), 0);
        t.handshake("PLAIN", 1);
        let a = t.authenticate(b"\0alice\0secret", &users(), &c, None, true, Instant::now());
        assert_eq!((a.error_code, a.close), (58, true));
        let a = s.authenticate(
            b"\0alice\0secret",
            &users(),
            &c,
            None,
            false,
            Instant::now(),
        );
        assert_eq!(a.principal, Some(Principal::User("alice".into())));
        assert!(s.authenticated() && !s.pending());
        assert_eq!(s.gate(ApiKey::Metadata, Instant::now()), Gate::Serve);
        let h = s.handshake("PLAIN", 1);
        assert_eq!((h.error_code, h.close), (34, false));
        // A second handshake mid-exchange closes.
        let mut m = SaslSession::new(true, c.offered(true, false), 0);
        m.handshake("SCRAM-SHA-256", 1);
        let h = m.handshake("SCRAM-SHA-256", 1);
        assert_eq!((h.error_code, h.close), (34, true));
        // PLAINTEXT listener without a cluster secret: everything is served, no SASL.
        let mut p = SaslSession::new(false, c.offered(false, false), 0);
        assert_eq!(p.gate(ApiKey::Metadata, Instant::now()), Gate::Serve);
        assert_eq!(p.handshake("PLAIN", 1).error_code, 34);
        // v0 handshake: raw tokens follow.
        let mut r = SaslSession::new(true, c.offered(true, false), 0);
        r.handshake("PLAIN", 0);
        assert!(r.expects_raw());
    }

    #[test]
    fn reauthentication() {
        use arctern_kafka_wire::kafka_protocol::messages::ApiKey;
        use std::time::Duration;
        let c = SaslConfig::default();
        let t0 = Instant::now();
        let mut s = SaslSession::new(true, c.offered(true, false), 1000);
        s.handshake("PLAIN", 1);
        let a = s.authenticate(b"\0alice\0secret", &users(), &c, None, false, t0);
        assert_eq!(a.session_lifetime_ms, 1000);
        assert_eq!(s.gate(ApiKey::Metadata, t0), Gate::Serve);
        assert!(matches!(
            s.gate(ApiKey::Metadata, t0 + Duration::from_millis(1000)),
            Gate::Close(_)
        ));
        // Re-authenticating as the same user renews the session.
        assert_eq!(s.handshake("PLAIN", 1).error_code, 0);
        let t1 = t0 + Duration::from_millis(900);
        let a = s.authenticate(b"\0alice\0secret", &users(), &c, None, false, t1);
        assert_eq!(a.error_code, 0);
        assert_eq!(
            s.gate(ApiKey::Metadata, t0 + Duration::from_millis(1500)),
            Gate::Serve
        );
        // Another mechanism, or another principal, is refused.
        let h = s.handshake("SCRAM-SHA-256", 1);
        assert_eq!((h.error_code, h.close), (33, true));
        let mut s = SaslSession::new(true, c.offered(true, false), 1000);
        s.handshake("PLAIN", 1);
        s.authenticate(b"\0alice\0secret", &users(), &c, None, false, t0);
        s.handshake("PLAIN", 1);
        let a = s.authenticate(b"\0bob\0pw", &users(), &c, None, false, t0);
        assert_eq!((a.error_code, a.close), (58, true));
    }

    #[test]
    fn handshake_offers() {
        let c = SaslConfig::default();
        assert!(Exchange::start("GSSAPI", &c.offered(true, true)).is_none());
        assert!(Exchange::start("PLAIN", &c.offered(false, true)).is_none());
        assert!(Exchange::start("ARCTERN-CLUSTER", &c.offered(false, true)).is_some());
        assert!(Exchange::start("ARCTERN-CLUSTER", &c.offered(true, false)).is_none());
        assert!(Exchange::start("SCRAM-SHA-256", &c.offered(true, false)).is_some());
    }

    /// A client per RFC 5802, for the tests.
    struct Client {
        m: ScramMechanism,
        password: String,
        gs2: String,
        bare: String,
        server_first: String,
        auth_message: String,
        salted: Vec<u8>,
    }

    impl Client {
        fn first(m: ScramMechanism, gs2: &str, user: &str, pw: &str) -> (Client, Vec<u8>) {
            let bare = format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL");
            let c = Client {
                m,
                password: pw.into(),
                gs2: gs2.into(),
                bare: bare.clone(),
                server_first: String::new(),
                auth_message: String::new(),
                salted: vec![],
            };
            (c, format!("{gs2}{bare}").into_bytes())
        }

        fn finalize(&mut self, server_first: &[u8]) -> Vec<u8> {
            let sf = std::str::from_utf8(server_first).unwrap().to_string();
            let mut nonce = "";
            let mut salt = vec![];
            let mut iters = 0;
            for f in sf.split(',') {
                if let Some(v) = f.strip_prefix("r=") {
                    nonce = v;
                } else if let Some(v) = f.strip_prefix("s=") {
                    salt = B64.decode(v).unwrap();
                } else if let Some(v) = f.strip_prefix("i=") {
                    iters = v.parse().unwrap();
                }
            }
            assert!(nonce.starts_with("fyko+d2lbbFgONRv9qkxdawL"));
            self.salted = self
                .m
                .salted_password(self.password.as_bytes(), &salt, iters);
            let without = format!("c={},r={nonce}", B64.encode(&self.gs2));
            self.auth_message = format!("{},{},{}", self.bare, sf, without);
            self.server_first = sf;
            let client_key = self.m.hmac(&self.salted, b"Client Key");
            let stored = self.m.hash(&client_key);
            let sig = self.m.hmac(&stored, self.auth_message.as_bytes());
            let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
            format!("{without},p={}", B64.encode(proof)).into_bytes()
        }

        fn server_signature(&self) -> Vec<u8> {
            let server_key = self.m.hmac(&self.salted, b"Server Key");
            let sig = self.m.hmac(&server_key, self.auth_message.as_bytes());
            format!("v={}", B64.encode(sig)).into_bytes()
        }
    }

    fn scram(m: ScramMechanism, gs2: &str, user: &str, pw: &str) -> (Step, Option<Vec<u8>>) {
        let config = SaslConfig::default();
        let users = users();
        let mut ex = Exchange::start(m.name(), &config.enabled).unwrap();
        let (mut client, first) = Client::first(m, gs2, user, pw);
        let Step::Continue(server_first) = ex.step(&first, &users, &config, None, 0) else {
            panic!("client-first refused")
        };
        let fin = client.finalize(&server_first);
        let step = ex.step(&fin, &users, &config, None, 0);
        // After the exchange, nothing more is accepted.
        assert!(matches!(
            ex.step(b"x", &users, &config, None, 0),
            Step::Failed { .. }
        ));
        (step, Some(client.server_signature()))
    }

    #[test]
    fn scram_success_both_mechanisms() {
        for (m, gs2) in [
            (ScramMechanism::Sha256, "n,,"),
            (ScramMechanism::Sha512, "y,,"),
            (ScramMechanism::Sha512, "n,a=alice,"),
        ] {
            let (step, sig) = scram(m, gs2, "alice", "secret");
            match step {
                Step::Done {
                    response,
                    principal,
                } => {
                    assert_eq!(principal, Principal::User("alice".into()));
                    assert_eq!(Some(response), sig);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            scram(ScramMechanism::Sha512, "n,,", "bob", "pw").0,
            Step::Done { .. }
        ));
    }

    #[test]
    fn scram_failures_look_alike() {
        let wrong = scram(ScramMechanism::Sha256, "n,,", "alice", "nope").0;
        let unknown = scram(ScramMechanism::Sha256, "n,,", "carol", "secret").0;
        // bob has no SHA-256 credential.
        let no_cred = scram(ScramMechanism::Sha256, "n,,", "bob", "pw").0;
        assert!(matches!(wrong, Step::Failed { .. }));
        assert_eq!(wrong, unknown);
        assert_eq!(wrong, no_cred);
    }

    #[test]
    fn unknown_user_salt_is_stable() {
        let config = SaslConfig::default();
        let salt = |user: &str| {
            let mut ex = Exchange::start("SCRAM-SHA-256", &config.enabled).unwrap();
            let Step::Continue(sf) = ex.step(
                format!("n,,n={user},r=abc").as_bytes(),
                &users(),
                &config,
                None,
                0,
            ) else {
                panic!()
            };
            let sf = String::from_utf8(sf).unwrap();
            sf.split(',').nth(1).unwrap().to_string()
        };
        assert_eq!(salt("carol"), salt("carol"));
        assert_ne!(salt("carol"), salt("dave"));
    }

    #[test]
    fn scram_malformed_and_refused_first_messages() {
        for bad in [
            "p=tls-server-end-point,,n=alice,r=abc",
            "n,,n=alice,r=abc,tokenauth=true",
            "n,,n=alice,r=abc,m=x",
            "n,,n=al=2Xice,r=abc",
            "n,,r=abc",
            "n,,n=alice",
            "n,,n=,r=abc",
            "x,,n=alice,r=abc",
            "n,a=mallory,n=alice,r=abc",
            "",
        ] {
            let config = SaslConfig::default();
            let mut ex = Exchange::start("SCRAM-SHA-256", &config.enabled).unwrap();
            assert!(
                matches!(
                    ex.step(bad.as_bytes(), &users(), &config, None, 0),
                    Step::Failed { .. }
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn scram_final_must_match() {
        let config = SaslConfig::default();
        let users = users();
        let mut ex = Exchange::start("SCRAM-SHA-256", &config.enabled).unwrap();
        let Step::Continue(_) = ex.step(b"n,,n=alice,r=abc", &users, &config, None, 0) else {
            panic!()
        };
        // Wrong nonce, missing proof, wrong channel binding: all fail.
        assert!(matches!(
            ex.step(b"c=biws,r=abcXYZ,p=AAAA", &users, &config, None, 0),
            Step::Failed { .. }
        ));
    }

    #[test]
    fn saslname_decoding() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(decode_saslname("a=").as_deref(), None);
        assert_eq!(decode_saslname("a=41").as_deref(), None);
        let f = parse_client_first("n,,n=x=2Cy,r=n1,ext=1").unwrap();
        assert_eq!(f.user, "x,y");
        assert_eq!(f.bare, "n=x=2Cy,r=n1,ext=1");
    }

    #[test]
    fn cluster_tokens() {
        let secret = ClusterSecret::new(&[7u8; 32]).unwrap();
        let now = arctern_security::cluster::now_ms();
        let config = SaslConfig::default();
        let offered = config.offered(false, true);
        let token = secret.prove(3, CLUSTER_PURPOSE, now);
        let mut ex = Exchange::start(CLUSTER, &offered).unwrap();
        assert_eq!(
            ex.step(token.as_bytes(), &users(), &config, Some(&secret), now),
            Step::Done {
                response: vec![],
                principal: Principal::Node(3)
            }
        );
        let other = ClusterSecret::new(&[8u8; 32]).unwrap();
        let bad = other.prove(3, CLUSTER_PURPOSE, now);
        let mut ex = Exchange::start(CLUSTER, &offered).unwrap();
        assert!(matches!(
            ex.step(bad.as_bytes(), &users(), &config, Some(&secret), now),
            Step::Failed { .. }
        ));
        let mut ex = Exchange::start(CLUSTER, &offered).unwrap();
        assert!(matches!(
            ex.step(token.as_bytes(), &users(), &config, None, now),
            Step::Failed { .. }
        ));
    }
}
