//! The authorization engine: pure functions from records to a [`Decision`]; no I/O, no clock
//! (the caller passes `now`). A denial is a value naming the rule and the reason.
//!
//! Rules, checked in this order:
//!
//! 1. `owner`: only the key's owner may sign with it (others are told the key is unknown);
//! 2. `revoked`, 3. `expired`;
//! 4. `scope`: the SSHSIG namespace (`sign --type`) must be one of the key's scopes;
//! 5. `tier`: a `cosign` key needs a human's approval for every signature, so it never signs
//!    autonomously here;
//! 6. `constraints`: a key with metadata constraints signs only after they are checked against
//!    the request's metadata; without that check it does not sign (fail closed).

use crate::store::{KeyStatus, SigningKeyRecord, Tier};

/// The rule a denial comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Owner,
    Revoked,
    Expired,
    Scope,
    Tier,
    Constraints,
}

/// What the engine decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny { rule: Rule, reason: String },
}

/// Decides whether `user_id` may have `key` sign in `namespace` at `now`.
pub fn may_sign(key: &SigningKeyRecord, user_id: &str, namespace: &str, now: i64) -> Decision {
    let deny = |rule, reason: String| Decision::Deny { rule, reason };
    if key.owner != user_id {
        return deny(Rule::Owner, format!("unknown key id {}", key.key_id));
    }
    match key.status(now) {
        KeyStatus::Revoked => {
            return deny(
                Rule::Revoked,
                format!("key {} has been revoked", key.key_id),
            );
        }
        KeyStatus::Expired => {
            let at = key.expires_at.map(crate::time::rfc3339).unwrap_or_default();
            return deny(Rule::Expired, format!("key {} expired at {at}", key.key_id));
        }
        KeyStatus::Active => {}
    }
    if !key.scopes.iter().any(|scope| scope == namespace) {
        return deny(
            Rule::Scope,
            format!(
                "key {} may sign in {} but not in {namespace:?}",
                key.key_id,
                key.scopes.join(", ")
            ),
        );
    }
    if key.tier == Tier::Cosign {
        return deny(
            Rule::Tier,
            format!(
                "key {} is in the cosign tier: every signature needs a human's approval",
                key.key_id
            ),
        );
    }
    if !key.constraints.is_empty() {
        return deny(
            Rule::Constraints,
            format!(
                "key {} carries metadata constraints, and this appliance signs with it only once \
                 they are checked against the request's metadata",
                key.key_id
            ),
        );
    }
    Decision::Allow
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKeyRecord {
        SigningKeyRecord {
            key_id: "ak_k".into(),
            owner: "usr_a".into(),
            token_object_id: "00".into(),
            public_key: "00".repeat(32),
            scopes: vec!["git".into(), "release".into()],
            tier: Tier::Autonomous,
            require_signature: false,
            constraints: Default::default(),
            created_at: 0,
            expires_at: Some(100),
            revoked_at: None,
        }
    }

    fn rule(decision: Decision) -> Option<Rule> {
        match decision {
            Decision::Allow => None,
            Decision::Deny { rule, .. } => Some(rule),
        }
    }

    #[test]
    fn table() {
        let mut revoked = key();
        revoked.revoked_at = Some(1);
        let mut cosign = key();
        cosign.tier = Tier::Cosign;
        let mut constrained = key();
        constrained
            .constraints
            .insert("amount".into(), serde_json::json!({"max": 5}));

        struct Case {
            name: &'static str,
            key: SigningKeyRecord,
            user: &'static str,
            namespace: &'static str,
            now: i64,
            expected: Option<Rule>,
        }
        let case = |name, key, user, namespace, now, expected| Case {
            name,
            key,
            user,
            namespace,
            now,
            expected,
        };
        let cases = [
            case("owner, in scope, in time", key(), "usr_a", "git", 50, None),
            case("second scope", key(), "usr_a", "release", 50, None),
            case("another user", key(), "usr_b", "git", 50, Some(Rule::Owner)),
            case(
                "revoked wins over expiry",
                revoked,
                "usr_a",
                "git",
                500,
                Some(Rule::Revoked),
            ),
            case(
                "expired at the instant",
                key(),
                "usr_a",
                "git",
                100,
                Some(Rule::Expired),
            ),
            case(
                "out of scope",
                key(),
                "usr_a",
                "file",
                50,
                Some(Rule::Scope),
            ),
            case("cosign tier", cosign, "usr_a", "git", 50, Some(Rule::Tier)),
            case(
                "constraints",
                constrained,
                "usr_a",
                "git",
                50,
                Some(Rule::Constraints),
            ),
        ];
        for c in cases {
            let decision = may_sign(&c.key, c.user, c.namespace, c.now);
            assert_eq!(rule(decision), c.expected, "{}", c.name);
        }
    }

    #[test]
    fn another_users_key_reads_as_unknown() {
        match may_sign(&key(), "usr_b", "git", 0) {
            Decision::Deny { reason, .. } => assert_eq!(reason, "unknown key id ak_k"),
            Decision::Allow => panic!("allowed"),
        }
    }
}
