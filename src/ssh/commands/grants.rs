//! `authorize`, `authorizations`, `revoke-authorization`, and the grant flags `create-key` shares.

use serde_json::Value;

use super::{Context, json_object};
use crate::appliance::{Error, Grant};
use crate::policy::constraint::parse_constraints;
use crate::policy::rules::{RuleKind, parse_rules};
use crate::policy::{Terms, Tier};
use crate::time;
use crate::views::{AuthorizationList, AuthorizationView, to_value};

/// The longest `--constraints`, `--hard-rules` or `--soft-rules` document.
const MAX_TERMS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TierArg {
    /// The grantee signs on its own.
    Autonomous,
    /// The principal approves every signature.
    Cosign,
}

/// What an authorization allows, as flags.
#[derive(Debug, clap::Args)]
pub struct GrantArgs {
    /// SSHSIG namespaces it may sign in, repeated or comma-separated [default: git].
    #[arg(long = "scope", value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// Confirmation tier.
    #[arg(long, value_enum, default_value = "autonomous")]
    pub tier: TierArg,
    /// The approver must also draw a handwritten signature (cosign tier only).
    #[arg(long)]
    pub require_signature: bool,
    /// When it stops: a duration (90d, 12h) or an RFC 3339 time.
    #[arg(long)]
    pub expiry: Option<String>,
    /// Typed metadata constraints: {"cap": {"min": 1, "max": 9}, "kind": {"allowed": ["a"]}}.
    #[arg(long)]
    pub constraints: Option<String>,
    /// Patterns facts must match: {"branch": ["main", "release/*"], "repository": ["github.com/acme/*"]}.
    #[arg(long)]
    pub hard_rules: Option<String>,
    /// Patterns or constraints that only warn: {"amount": {"max": 10000}}.
    #[arg(long)]
    pub soft_rules: Option<String>,
    /// Who may sign under it: a usr_ id or an SSH key fingerprint (SHA256:...) [default: you].
    #[arg(long)]
    pub grantee: Option<String>,
}

impl GrantArgs {
    /// Reads the flags, refusing anything unclear rather than dropping it. The rules between
    /// the terms (scopes, tiers) are the policy's: [`Terms::checked`], applied by the appliance.
    pub fn into_grant(self, now: i64) -> Result<Grant, Error> {
        let invalid = |message: String| Error::InvalidArgument(message);
        let tier = match self.tier {
            TierArg::Autonomous => Tier::Autonomous,
            TierArg::Cosign => Tier::Cosign,
        };
        let expires_at = self
            .expiry
            .map(|text| time::parse_expiry(&text, now))
            .transpose()
            .map_err(invalid)?;
        let object = |flag: &str, text: Option<String>| match text {
            Some(text) => json_object(flag, &text, MAX_TERMS),
            None => Ok(serde_json::Map::new()),
        };
        let constraints = parse_constraints(&object("--constraints", self.constraints)?)
            .map_err(|e| invalid(format!("--constraints: {e}")))?;
        let hard_rules = parse_rules(&object("--hard-rules", self.hard_rules)?, RuleKind::Hard)
            .map_err(|e| invalid(format!("--hard-rules: {e}")))?;
        let soft_rules = parse_rules(&object("--soft-rules", self.soft_rules)?, RuleKind::Soft)
            .map_err(|e| invalid(format!("--soft-rules: {e}")))?;
        Ok(Grant {
            terms: Terms {
                scopes: self.scopes,
                tier,
                require_signature: self.require_signature,
                constraints,
                hard_rules,
                soft_rules,
                expires_at,
            },
            grantee: self.grantee,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct AuthorizeArgs {
    /// The key (you must own it).
    #[arg(long)]
    pub key_id: String,
    #[command(flatten)]
    pub grant: GrantArgs,
}

pub async fn authorize(args: AuthorizeArgs, ctx: &Context) -> Result<Value, Error> {
    let grant = args.grant.into_grant(time::now())?;
    let authorization = ctx
        .appliance
        .authorize(&ctx.caller, &args.key_id, grant)
        .await?;
    Ok(to_value(&AuthorizationView::from(&authorization)))
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The key.
    #[arg(long)]
    pub key_id: String,
}

pub fn list(args: ListArgs, ctx: &Context) -> Result<Value, Error> {
    let authorizations = ctx.appliance.authorizations(&ctx.caller, &args.key_id)?;
    Ok(to_value(&AuthorizationList {
        key_id: args.key_id,
        authorizations: authorizations.iter().map(AuthorizationView::from).collect(),
    }))
}

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The authorization (az_...).
    #[arg(long)]
    pub id: String,
}

pub async fn revoke(args: RevokeArgs, ctx: &Context) -> Result<Value, Error> {
    let revoked = ctx
        .appliance
        .revoke_authorization(&ctx.caller, &args.id)
        .await?;
    Ok(to_value(&AuthorizationView::from(&revoked)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> GrantArgs {
        GrantArgs {
            scopes: vec![],
            tier: TierArg::Autonomous,
            require_signature: false,
            expiry: None,
            constraints: None,
            hard_rules: None,
            soft_rules: None,
            grantee: None,
        }
    }

    #[test]
    fn defaults_to_git_scope_autonomous_for_the_caller() {
        let grant = args().into_grant(0).unwrap();
        assert_eq!(grant.terms.clone().checked().unwrap().scopes, ["git"]);
        assert_eq!(grant.terms.tier, Tier::Autonomous);
        assert!(grant.terms.constraints.is_empty() && grant.grantee.is_none());
    }

    #[test]
    fn refusals() {
        let cases: Vec<(&str, GrantArgs, &str)> = vec![
            (
                "past expiry",
                GrantArgs {
                    expiry: Some("0s".into()),
                    ..args()
                },
                "not in the future",
            ),
            (
                "constraints not JSON",
                GrantArgs {
                    constraints: Some("{nope".into()),
                    ..args()
                },
                "not valid JSON",
            ),
            (
                "constraints not an object",
                GrantArgs {
                    constraints: Some("[1]".into()),
                    ..args()
                },
                "JSON object",
            ),
            (
                "min above max",
                GrantArgs {
                    constraints: Some(r#"{"cap": {"min": 9, "max": 1}}"#.into()),
                    ..args()
                },
                "min above max",
            ),
            (
                "unknown constraint key",
                GrantArgs {
                    constraints: Some(r#"{"cap": {"most": 9}}"#.into()),
                    ..args()
                },
                "unknown key",
            ),
            (
                "two kinds",
                GrantArgs {
                    constraints: Some(r#"{"cap": {"max": 9, "required": true}}"#.into()),
                    ..args()
                },
                "exactly one",
            ),
            (
                "wrong type",
                GrantArgs {
                    constraints: Some(r#"{"cap": {"max": "9"}}"#.into()),
                    ..args()
                },
                "must be a number",
            ),
            (
                "typed hard rule",
                GrantArgs {
                    hard_rules: Some(r#"{"cap": {"max": 9}}"#.into()),
                    ..args()
                },
                "patterns",
            ),
            (
                "huge",
                GrantArgs {
                    constraints: Some(format!("{{\"a\": \"{}\"}}", "x".repeat(MAX_TERMS))),
                    ..args()
                },
                "longer than",
            ),
        ];
        for (name, args, expected) in cases {
            let err = args
                .into_grant(1_000)
                .err()
                .unwrap_or_else(|| panic!("{name}: accepted"));
            assert_eq!(err.code(), "invalid_argument", "{name}");
            assert!(err.to_string().contains(expected), "{name}: {err}");
        }
    }

    #[test]
    fn the_seed_example_is_accepted() {
        let grant = GrantArgs {
            scopes: vec!["safe-agreement".into()],
            tier: TierArg::Cosign,
            require_signature: true,
            expiry: Some("30d".into()),
            constraints: Some(
                r#"{"valuation_cap": {"min": 5000000, "max": 15000000}, "discount_rate": {"min": 0.15}}"#.into(),
            ),
            ..args()
        }
        .into_grant(1_000)
        .unwrap();
        assert_eq!(grant.terms.scopes, ["safe-agreement"]);
        assert_eq!(grant.terms.expires_at, Some(1_000 + 30 * 86_400));
        assert_eq!(grant.terms.constraints.len(), 2);
    }
}
