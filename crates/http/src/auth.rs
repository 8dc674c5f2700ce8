//! HTTP basic auth against the cluster's user database, with RabbitMQ's tag rules: the
//! decision is a pure function of the `Authorization` header and the cluster state.

use arctern_metadata::ClusterState;
use base64::Engine;

/// The realm RabbitMQ's management plugin names in `WWW-Authenticate`.
pub const REALM: &str = "RabbitMQ Management";
/// The `WWW-Authenticate` value of a 401.
pub const CHALLENGE: &str = "Basic realm=\"RabbitMQ Management\"";

/// What a request needs, as RabbitMQ's management plugin grades its users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `/metrics` and the cluster-wide read APIs: `monitoring` or `administrator`.
    Monitoring,
    /// A user's own objects: `management`, `policymaker`, `monitoring` or `administrator`.
    Management,
    /// Everything: `administrator`.
    Administrator,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 401: no credentials, unreadable credentials, unknown user or wrong password.
    #[error("not authorised")]
    Unauthorized,
    /// 401 (a password was wrong): counts as a failed login for the rate limiter.
    #[error("not authorised")]
    BadPassword,
    /// 403: a known user whose tags do not allow this.
    #[error("access refused")]
    Forbidden,
}

/// The user and password of a `Basic` authorization header.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Whether a user with `tags` may do what `need` names.
pub fn tags_allow(tags: &[String], need: Need) -> bool {
    let has = |t: &str| tags.iter().any(|x| x == t);
    match need {
        Need::Administrator => has("administrator"),
        Need::Monitoring => has("administrator") || has("monitoring"),
        Need::Management => {
            has("administrator") || has("monitoring") || has("policymaker") || has("management")
        }
    }
}

/// The authenticated user name, or why not.
pub fn authorize(
    cluster: &ClusterState,
    header: Option<&str>,
    need: Need,
) -> Result<String, Refusal> {
    let (user, pass) = header.and_then(parse_basic).ok_or(Refusal::Unauthorized)?;
    let Some(record) = cluster.users.get(&user) else {
        return Err(Refusal::BadPassword);
    };
    if !record.check_password(&pass) {
        return Err(Refusal::BadPassword);
    }
    if tags_allow(&record.tags, need) {
        Ok(user)
    } else {
        Err(Refusal::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arctern_metadata::UserRecord;

    fn header(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    fn cluster() -> ClusterState {
        let mut c = ClusterState::default();
        for (name, tags) in [
            ("admin", vec!["administrator"]),
            ("mon", vec!["monitoring"]),
            ("mgmt", vec!["management"]),
            ("plain", vec![]),
        ] {
            c.users.insert(
                name.to_string(),
                UserRecord::with_password("pw", tags.into_iter().map(String::from).collect()),
            );
        }
        c
    }

    #[test]
    fn the_challenge_names_the_realm() {
        assert_eq!(CHALLENGE, format!("Basic realm=\"{REALM}\""));
    }

    #[test]
    fn parses_basic_headers() {
        assert_eq!(
            parse_basic(&header("a", "b:c")),
            Some(("a".into(), "b:c".into()))
        );
        assert_eq!(parse_basic("Bearer xyz"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic(""), None);
    }

    #[test]
    fn grades_users_as_rabbitmq_does() {
        let c = cluster();
        let need = Need::Monitoring;
        assert_eq!(authorize(&c, None, need), Err(Refusal::Unauthorized));
        assert_eq!(
            authorize(&c, Some(&header("admin", "no")), need),
            Err(Refusal::BadPassword)
        );
        assert_eq!(
            authorize(&c, Some(&header("ghost", "pw")), need),
            Err(Refusal::BadPassword)
        );
        assert_eq!(
            authorize(&c, Some(&header("admin", "pw")), need),
            Ok("admin".into())
        );
        assert_eq!(
            authorize(&c, Some(&header("mon", "pw")), need),
            Ok("mon".into())
        );
        assert_eq!(
            authorize(&c, Some(&header("mgmt", "pw")), need),
            Err(Refusal::Forbidden)
        );
        assert_eq!(
            authorize(&c, Some(&header("plain", "pw")), need),
            Err(Refusal::Forbidden)
        );
        assert!(tags_allow(&["management".into()], Need::Management));
        assert!(!tags_allow(&["monitoring".into()], Need::Administrator));
    }
}
