//! The authorization engine: pure functions from records and a request to a [`Decision`]; no
//! I/O, no clock (the caller passes `now`). A decision is a value naming the rule and the reason,
//! and listing every check it made, for the reply and the audit entry.
//!
//! # Model
//!
//! A signing key belongs to its *owner*. It signs only through *authorizations*: each is granted
//! by a *principal* (the owner) to a *grantee* (a user, often an agent; by default the owner) and
//! carries [`Terms`]: scopes (SSHSIG namespaces), typed metadata constraints, hard rules, soft
//! rules, a confirmation tier (`autonomous`, or `cosign`: the principal approves each signature,
//! with a drawn signature when `require_signature` is set), and an optional expiry.
//!
//! # Deciding
//!
//! 1. A requester who owns the key or holds an authorization on it may know it exists; anyone
//!    else is told the key is unknown.
//! 2. A revoked key signs nothing.
//! 3. Each of the requester's authorizations is checked in the order granted: not revoked, not
//!    expired, namespace in scope, every constraint met, every hard rule met. Soft rules only add
//!    warnings.
//! 4. Any authorization that passes and is autonomous allows the signature (the first such one is
//!    named). Failing that, one that passes and needs a co-signer makes the request wait for its
//!    principal (one without a drawn signature preferred). Authorizations only ever grant; none
//!    can veto another.
//! 5. Otherwise the request is denied with the most relevant failure: that of the first
//!    authorization that is active and in scope, else of the first in scope, else `scope`.

pub mod constraint;
pub mod decimal;
pub mod rules;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use self::constraint::{Constraint, Constraints};
pub use self::rules::{RuleTest, Rules};

/// How much a human is involved before an authorization signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Autonomous,
    Cosign,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Autonomous => "autonomous",
            Tier::Cosign => "cosign",
        }
    }
}

/// What an authorization allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terms {
    pub scopes: Vec<String>,
    pub tier: Tier,
    pub require_signature: bool,
    pub constraints: Constraints,
    pub hard_rules: Rules,
    pub soft_rules: Rules,
    pub expires_at: Option<i64>,
}

/// How a caller relates to a key: its owner, or a grantee of one of its authorizations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Grantee,
}

/// The longest scope name.
pub const MAX_SCOPE: usize = 64;

/// The sshsign seed's words for a namespace, and the namespace each means: git signs commits
/// and tags in `git`, which the seed calls `git-commit`. A scope or a `sign --type` in the
/// seed's word means the namespace.
pub const SCOPE_ALIASES: &[(&str, &str)] = &[("git-commit", "git")];

/// The namespace a scope or type word means (itself unless it is one of the seed's words).
pub fn namespace_of(word: &str) -> &str {
    SCOPE_ALIASES
        .iter()
        .find(|(alias, _)| *alias == word)
        .map_or(word, |(_, namespace)| namespace)
}

/// The seed's words for `namespace`, if it has any.
pub fn aliases_of(namespace: &str) -> impl Iterator<Item = &'static str> {
    SCOPE_ALIASES
        .iter()
        .filter(move |(_, meant)| *meant == namespace)
        .map(|(alias, _)| *alias)
}
/// The longest a co-signed request may wait for its principal.
pub const MAX_PENDING_TTL: i64 = 30 * 86_400;

/// Why terms cannot be granted: the field at fault (`scope`, `require_signature`) and why, in
/// words that follow the field's name. Each front names the field its own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermsRefusal {
    pub field: &'static str,
    pub reason: String,
}

impl Terms {
    /// The terms as granted: scopes trimmed, checked, in their namespaces' names (`git-commit`
    /// is `git`) and without repeats (`git` if none), and a drawn signature asked only of a
    /// human co-signer.
    pub fn checked(mut self) -> Result<Terms, TermsRefusal> {
        let refuse = |field, reason: String| TermsRefusal { field, reason };
        let mut scopes: Vec<String> = Vec::new();
        for scope in self.scopes {
            let scope = scope.trim().to_owned();
            if scope.is_empty() || scope.len() > MAX_SCOPE {
                return Err(refuse(
                    "scope",
                    format!("is 1 to {MAX_SCOPE} characters long"),
                ));
            }
            if !scope
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
            {
                return Err(refuse(
                    "scope",
                    format!("{scope:?} may hold only letters, digits and - _ . @"),
                ));
            }
            let scope = namespace_of(&scope).to_owned();
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            scopes.push("git".to_owned());
        }
        self.scopes = scopes;
        if self.require_signature && self.tier != Tier::Cosign {
            return Err(refuse(
                "require_signature",
                "needs the cosign tier: only a human approver can draw a signature".to_owned(),
            ));
        }
        let furthest = crate::time::now().saturating_add(crate::time::MAX_EXPIRY.as_secs() as i64);
        if self.expires_at.is_some_and(|at| at > furthest) {
            return Err(refuse(
                "expires_at",
                "is more than 10 years away".to_owned(),
            ));
        }
        Ok(self)
    }
}

/// A grant of a key to a grantee under terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    pub authorization_id: String,
    pub key_id: String,
    /// Who may sign under it.
    pub grantee: String,
    /// Who granted it, and approves its co-signed requests.
    pub principal: String,
    pub terms: Terms,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// The key facts the engine needs.
#[derive(Debug, Clone, Copy)]
pub struct KeyFacts<'a> {
    pub key_id: &'a str,
    pub owner: &'a str,
    pub revoked: bool,
}

/// A request to sign.
#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    pub requester: &'a str,
    pub namespace: &'a str,
    /// `--metadata`, an object (empty when not given).
    pub metadata: &'a Map<String, Value>,
    /// Facts the client states about where it runs: `repository`, `branch`.
    pub context: &'a Map<String, Value>,
}

impl SignRequest<'_> {
    /// The request's facts: metadata with the context laid over it.
    fn fact(&self, name: &str) -> Option<&Value> {
        self.context.get(name).or_else(|| self.metadata.get(name))
    }
}

/// The rule a denial comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    UnknownKey,
    KeyRevoked,
    NotAuthorized,
    AuthorizationRevoked,
    AuthorizationExpired,
    Scope,
    Constraint,
    HardRule,
}

impl Rule {
    /// The rule's name, as replies and audit entries write it.
    pub fn name(self) -> &'static str {
        match self {
            Rule::UnknownKey => "unknown_key",
            Rule::KeyRevoked => "key_revoked",
            Rule::NotAuthorized => "not_authorized",
            Rule::AuthorizationRevoked => "authorization_revoked",
            Rule::AuthorizationExpired => "authorization_expired",
            Rule::Scope => "scope",
            Rule::Constraint => "constraint",
            Rule::HardRule => "hard_rule",
        }
    }
}

/// One check the engine made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `revoked`, `expiry`, `scope`, `constraint:FIELD`, `hard:FACT`, `soft:FACT`.
    pub check: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The checks made against one authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub authorization_id: String,
    pub checks: Vec<Check>,
}

/// What the engine decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow {
        authorization_id: String,
        warnings: Vec<String>,
        evaluated: Vec<Evaluation>,
    },
    NeedsApproval {
        authorization_id: String,
        principal: String,
        require_signature: bool,
        warnings: Vec<String>,
        evaluated: Vec<Evaluation>,
    },
    Deny {
        rule: Rule,
        reason: String,
        evaluated: Vec<Evaluation>,
    },
}

impl Decision {
    /// The soft rules of `authorization_id` that did not hold, by fact name.
    pub fn soft_failures(&self, authorization_id: &str) -> Vec<String> {
        self.evaluated()
            .iter()
            .filter(|e| e.authorization_id == authorization_id)
            .flat_map(|e| &e.checks)
            .filter(|c| !c.passed)
            .filter_map(|c| c.check.strip_prefix("soft:").map(str::to_owned))
            .collect()
    }

    /// Every check made, for the audit entry.
    pub fn evaluated(&self) -> &[Evaluation] {
        match self {
            Decision::Allow { evaluated, .. }
            | Decision::NeedsApproval { evaluated, .. }
            | Decision::Deny { evaluated, .. } => evaluated,
        }
    }
}

/// The first failing check of one authorization, if any, and the warnings of its soft rules.
struct Verdict {
    failure: Option<(Rule, String)>,
    in_scope: bool,
    active: bool,
    warnings: Vec<String>,
}

fn evaluate(auth: &Authorization, request: &SignRequest<'_>, now: i64) -> (Verdict, Evaluation) {
    let mut checks = Vec::new();
    let mut failure: Option<(Rule, String)> = None;
    let id = &auth.authorization_id;
    let mut record = |check: String, result: Result<(), (Rule, String)>| {
        let detail = result.as_ref().err().map(|(_, reason)| reason.clone());
        checks.push(Check {
            check,
            passed: result.is_ok(),
            detail,
        });
        if let (Err(f), None) = (result, &failure) {
            failure = Some(f);
        }
    };

    let revoked = auth.revoked_at.is_some();
    record(
        "revoked".into(),
        if revoked {
            Err((
                Rule::AuthorizationRevoked,
                format!("authorization {id} has been revoked"),
            ))
        } else {
            Ok(())
        },
    );
    let expired = auth.terms.expires_at.is_some_and(|at| at <= now);
    record(
        "expiry".into(),
        match auth.terms.expires_at {
            Some(at) if expired => Err((
                Rule::AuthorizationExpired,
                format!("authorization {id} expired at {}", crate::time::rfc3339(at)),
            )),
            _ => Ok(()),
        },
    );
    // Records made before the seed's words were read as namespaces may hold `git-commit`.
    let in_scope = auth
        .terms
        .scopes
        .iter()
        .any(|s| namespace_of(s) == namespace_of(request.namespace));
    record(
        "scope".into(),
        if in_scope {
            Ok(())
        } else {
            Err((
                Rule::Scope,
                format!(
                    "authorization {id} may sign in {} but not in {:?}",
                    auth.terms.scopes.join(", "),
                    request.namespace
                ),
            ))
        },
    );
    for (field, constraint) in &auth.terms.constraints {
        let result = constraint
            .check(request.metadata.get(field))
            .map_err(|why| (Rule::Constraint, format!("metadata field {field:?} {why}")));
        record(format!("constraint:{field}"), result);
    }
    for (fact, test) in &auth.terms.hard_rules {
        let result = test
            .check(request.fact(fact))
            .map_err(|why| (Rule::HardRule, format!("{fact} {why}")));
        record(format!("hard:{fact}"), result);
    }
    let mut warnings = Vec::new();
    for (fact, test) in &auth.terms.soft_rules {
        let result = test.check(request.fact(fact));
        if let Err(why) = &result {
            warnings.push(format!("soft rule {fact}: {fact} {why}"));
        }
        checks.push(Check {
            check: format!("soft:{fact}"),
            passed: result.is_ok(),
            detail: result.err(),
        });
    }
    let verdict = Verdict {
        failure,
        in_scope,
        active: !revoked && !expired,
        warnings,
    };
    let evaluation = Evaluation {
        authorization_id: id.clone(),
        checks,
    };
    (verdict, evaluation)
}

/// Decides whether `request` may have `key` sign, given the key's authorizations in the order
/// they were granted.
pub fn decide(
    key: KeyFacts<'_>,
    authorizations: &[Authorization],
    request: &SignRequest<'_>,
    now: i64,
) -> Decision {
    let deny = |rule, reason: String, evaluated| Decision::Deny {
        rule,
        reason,
        evaluated,
    };
    let mine: Vec<&Authorization> = authorizations
        .iter()
        .filter(|a| a.key_id == key.key_id && a.grantee == request.requester)
        .collect();
    if mine.is_empty() && key.owner != request.requester {
        return deny(
            Rule::UnknownKey,
            format!("unknown key id {}", key.key_id),
            vec![],
        );
    }
    if key.revoked {
        return deny(
            Rule::KeyRevoked,
            format!("key {} has been revoked", key.key_id),
            vec![],
        );
    }
    if mine.is_empty() {
        return deny(
            Rule::NotAuthorized,
            format!(
                "you own key {} but hold no authorization to sign with it; grant one with \
                 `authorize --key-id {}`",
                key.key_id, key.key_id
            ),
            vec![],
        );
    }
    let (verdicts, evaluated): (Vec<Verdict>, Vec<Evaluation>) =
        mine.iter().map(|a| evaluate(a, request, now)).unzip();
    let passing = |tier: Tier| {
        mine.iter()
            .zip(&verdicts)
            .filter(move |(a, v)| v.failure.is_none() && a.terms.tier == tier)
    };
    if let Some((auth, verdict)) = passing(Tier::Autonomous).next() {
        return Decision::Allow {
            authorization_id: auth.authorization_id.clone(),
            warnings: verdict.warnings.clone(),
            evaluated,
        };
    }
    let cosigned = passing(Tier::Cosign).min_by_key(|(a, _)| a.terms.require_signature);
    if let Some((auth, verdict)) = cosigned {
        return Decision::NeedsApproval {
            authorization_id: auth.authorization_id.clone(),
            principal: auth.principal.clone(),
            require_signature: auth.terms.require_signature,
            warnings: verdict.warnings.clone(),
            evaluated,
        };
    }
    let most_relevant = verdicts
        .iter()
        .find(|v| v.in_scope && v.active)
        .or_else(|| verdicts.iter().find(|v| v.in_scope));
    let Some((rule, reason)) = most_relevant.and_then(|v| v.failure.clone()) else {
        let mut scopes: Vec<&str> = mine
            .iter()
            .flat_map(|a| a.terms.scopes.iter().map(String::as_str))
            .collect();
        scopes.dedup();
        let reason = format!(
            "no authorization of yours on key {} covers namespace {:?} (they cover: {})",
            key.key_id,
            request.namespace,
            scopes.join(", ")
        );
        return deny(Rule::Scope, reason, evaluated);
    };
    deny(rule, reason, evaluated)
}

#[cfg(test)]
mod tests;
