//! RabbitMQ's permission model (sans-IO): per user and vhost three regexes, configure,
//! write and read, matched against the name of the exchange or queue an operation uses.
//!
//! As RabbitMQ's internal backend (`rabbit_auth_backend_internal:check_resource_access`):
//! an unanchored search (`re:run`), the empty pattern meaning `^$` (in practice: nothing),
//! a pattern that does not compile denying; the default exchange is checked under the
//! name `amq.default` (`rabbit_access_control`). Rust's `regex` syntax is PCRE's minus
//! look-around and back-references.

use arctern_metadata::Permission;
use regex::Regex;

use crate::codes::AmqpError;

/// Which of the three permissions an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Configure,
    Write,
    Read,
}

impl Access {
    pub fn name(self) -> &'static str {
        match self {
            Access::Configure => "configure",
            Access::Write => "write",
            Access::Read => "read",
        }
    }
}

/// The kind of resource, as RabbitMQ names it in refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Exchange,
    Queue,
}

impl Resource {
    pub fn name(self) -> &'static str {
        match self {
            Resource::Exchange => "exchange",
            Resource::Queue => "queue",
        }
    }
}

/// One pattern, compiled (`None`: it does not compile, so it matches nothing).
#[derive(Debug, Clone)]
struct Pattern(Option<Regex>);

impl Pattern {
    fn new(source: &str) -> Pattern {
        let source = if source.is_empty() { "^$" } else { source };
        Pattern(Regex::new(source).ok())
    }
    fn matches(&self, name: &str) -> bool {
        self.0.as_ref().is_some_and(|r| r.is_match(name))
    }
}

/// A user's permissions in one vhost, compiled once (per connection, and again when the
/// metadata changes them).
#[derive(Debug, Clone)]
pub struct Compiled {
    source: Permission,
    configure: Pattern,
    write: Pattern,
    read: Pattern,
}

impl Compiled {
    pub fn new(p: &Permission) -> Compiled {
        Compiled {
            source: p.clone(),
            configure: Pattern::new(&p.configure),
            write: Pattern::new(&p.write),
            read: Pattern::new(&p.read),
        }
    }

    /// Whether these were compiled from `p`.
    pub fn is_from(&self, p: &Permission) -> bool {
        &self.source == p
    }

    pub fn allows(&self, access: Access, name: &str) -> bool {
        // RabbitMQ checks the default exchange under this name.
        let name = if name.is_empty() { "amq.default" } else { name };
        match access {
            Access::Configure => self.configure.matches(name),
            Access::Write => self.write.matches(name),
            Access::Read => self.read.matches(name),
        }
    }
}

/// Checks one access; `perms` is `None` when the user has no permissions in the vhost
/// (any more). The refusal is RabbitMQ's 403 with its text.
pub fn check(
    perms: Option<&Compiled>,
    access: Access,
    kind: Resource,
    name: &str,
    vhost: &str,
    user: &str,
) -> Result<(), AmqpError> {
    if perms.is_some_and(|p| p.allows(access, name)) {
        return Ok(());
    }
    let shown = if kind == Resource::Exchange && name.is_empty() {
        "amq.default"
    } else {
        name
    };
    Err(AmqpError::refused(format!(
        "{} access to {} '{shown}' in vhost '{vhost}' refused for user '{user}'",
        access.name(),
        kind.name()
    )))
}

/// A passive declare needs any of the three permissions (RabbitMQ since
/// rabbitmq-server#16085); refused, it reports configure, as a regular declare would.
pub fn check_any(
    perms: Option<&Compiled>,
    kind: Resource,
    name: &str,
    vhost: &str,
    user: &str,
) -> Result<(), AmqpError> {
    if [Access::Read, Access::Write]
        .into_iter()
        .any(|a| perms.is_some_and(|p| p.allows(a, name)))
    {
        return Ok(());
    }
    check(perms, Access::Configure, kind, name, vhost, user)
}

/// Checks that a pattern compiles (what `arctern permissions set` validates).
pub fn validate(pattern: &str) -> Result<(), String> {
    Regex::new(pattern)
        .map(|_| ())
        .map_err(|e| format!("invalid regular expression '{pattern}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::ACCESS_REFUSED;

    fn perm(c: &str, w: &str, r: &str) -> Compiled {
        Compiled::new(&Permission {
            configure: c.into(),
            write: w.into(),
            read: r.into(),
        })
    }

    #[test]
    fn unanchored_search_as_re_run() {
        let p = perm("bob", "^bob-.*", ".*");
        assert!(p.allows(Access::Configure, "bob"));
        assert!(p.allows(Access::Configure, "not-bob-really"));
        assert!(p.allows(Access::Write, "bob-1"));
        assert!(!p.allows(Access::Write, "x-bob-1"));
        assert!(p.allows(Access::Read, "anything"));
    }

    #[test]
    fn empty_pattern_matches_no_named_resource() {
        let p = perm("", "", "");
        for a in [Access::Configure, Access::Write, Access::Read] {
            assert!(!p.allows(a, "q"));
            // the default exchange is "amq.default", not the empty name
            assert!(!p.allows(a, ""));
        }
    }

    #[test]
    fn default_exchange_is_amq_default() {
        let p = perm("", "^amq\\.default$", "");
        assert!(p.allows(Access::Write, ""));
        assert!(!p.allows(Access::Write, "amq.direct"));
    }

    #[test]
    fn bad_pattern_denies() {
        let p = perm("(", "(", "(");
        assert!(!p.allows(Access::Read, "("));
        assert!(validate("(").is_err());
        assert!(validate("^a.*").is_ok());
    }

    #[test]
    fn refusal_has_rabbitmq_text() {
        let p = perm("^bob-", "", ".*");
        let e = check(
            Some(&p),
            Access::Configure,
            Resource::Queue,
            "q",
            "/",
            "bob",
        )
        .unwrap_err();
        assert_eq!(e.code, ACCESS_REFUSED);
        assert_eq!(
            e.text,
            "configure access to queue 'q' in vhost '/' refused for user 'bob'"
        );
        let e = check(Some(&p), Access::Write, Resource::Exchange, "", "a", "bob").unwrap_err();
        assert_eq!(
            e.text,
            "write access to exchange 'amq.default' in vhost 'a' refused for user 'bob'"
        );
        assert!(check(None, Access::Read, Resource::Queue, "q", "/", "bob").is_err());
        assert!(check(Some(&p), Access::Read, Resource::Queue, "q", "/", "bob").is_ok());
        // passive declares: any permission will do
        assert!(check_any(Some(&p), Resource::Queue, "q", "/", "bob").is_ok());
        let none = perm("", "", "");
        let e = check_any(Some(&none), Resource::Queue, "q", "/", "bob").unwrap_err();
        assert!(e.text.starts_with("configure access"));
    }
}
