//! `create-key [--scope NS]... [--tier autonomous|cosign] [--require-signature] [--expiry WHEN]
//! [--constraints JSON]`: a new Ed25519 key whose private half is generated in, and never leaves,
//! the token.

use serde_json::{Map, Value};

use super::{Context, key_json};
use crate::appliance::{Error, KeySpec};
use crate::store::Tier;
use crate::time;

/// The longest `--constraints` document accepted.
const MAX_CONSTRAINTS: usize = 16 * 1024;
/// The longest scope name accepted.
const MAX_SCOPE: usize = 64;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TierArg {
    /// The key signs on its own.
    Autonomous,
    /// A human approves every signature.
    Cosign,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// SSHSIG namespaces the key may sign in, repeated or comma-separated [default: git].
    #[arg(long = "scope", value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// Confirmation tier.
    #[arg(long, value_enum, default_value = "autonomous")]
    pub tier: TierArg,
    /// The approver must also draw a handwritten signature (cosign tier only).
    #[arg(long)]
    pub require_signature: bool,
    /// When the key stops signing: a duration (90d, 12h) or an RFC 3339 time.
    #[arg(long)]
    pub expiry: Option<String>,
    /// Typed metadata constraints, a JSON object: {"field": {"min": 1, "max": 9}, ...}.
    #[arg(long)]
    pub constraints: Option<String>,
}

pub async fn run(args: Args, ctx: &Context) -> Result<Value, Error> {
    let spec = validate(args, time::now())?;
    let key = ctx.appliance.create_key(&ctx.caller, spec).await?;
    Ok(key_json(&key))
}

/// Turns flags into a [`KeySpec`], refusing anything unclear rather than dropping it.
pub fn validate(args: Args, now: i64) -> Result<KeySpec, Error> {
    let invalid = |message: String| Error::InvalidArgument(message);
    let mut scopes: Vec<String> = Vec::new();
    for scope in args.scopes {
        let scope = scope.trim().to_owned();
        if scope.is_empty() || scope.len() > MAX_SCOPE {
            return Err(invalid(format!(
                "a scope is 1 to {MAX_SCOPE} characters long"
            )));
        }
        if !scope
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        {
            return Err(invalid(format!(
                "scope {scope:?} may hold only letters, digits and - _ . @"
            )));
        }
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        scopes.push("git".to_owned());
    }
    let tier = match args.tier {
        TierArg::Autonomous => Tier::Autonomous,
        TierArg::Cosign => Tier::Cosign,
    };
    if args.require_signature && tier != Tier::Cosign {
        return Err(invalid(
            "--require-signature needs --tier cosign: only a human approver can draw a signature"
                .to_owned(),
        ));
    }
    let expires_at = args
        .expiry
        .map(|text| time::parse_expiry(&text, now))
        .transpose()
        .map_err(invalid)?;
    let constraints = match args.constraints {
        Some(text) => parse_constraints(&text)?,
        None => Map::new(),
    };
    Ok(KeySpec {
        scopes,
        tier,
        require_signature: args.require_signature,
        constraints,
        expires_at,
    })
}

/// `--constraints` must be a JSON object mapping field names to constraint objects.
fn parse_constraints(text: &str) -> Result<Map<String, Value>, Error> {
    let invalid = |message: String| Error::InvalidArgument(message);
    if text.len() > MAX_CONSTRAINTS {
        return Err(invalid(format!(
            "--constraints is longer than {MAX_CONSTRAINTS} bytes"
        )));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| invalid(format!("--constraints is not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(invalid(
            "--constraints must be a JSON object like {\"field\": {\"max\": 10}}".to_owned(),
        ));
    };
    for (field, constraint) in &map {
        if !constraint.is_object() {
            return Err(invalid(format!(
                "constraint for {field:?} must be an object like {{\"min\": 1}}, not {constraint}"
            )));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Args {
        Args {
            scopes: vec![],
            tier: TierArg::Autonomous,
            require_signature: false,
            expiry: None,
            constraints: None,
        }
    }

    #[test]
    fn defaults_to_git_scope_autonomous() {
        let spec = validate(args(), 0).unwrap();
        assert_eq!(spec.scopes, ["git"]);
        assert_eq!(spec.tier, Tier::Autonomous);
        assert!(spec.constraints.is_empty());
        assert_eq!(spec.expires_at, None);
    }

    #[test]
    fn refusals() {
        let cases: Vec<(&str, Args)> = vec![
            (
                "signature without cosign",
                Args {
                    require_signature: true,
                    ..args()
                },
            ),
            (
                "bad scope",
                Args {
                    scopes: vec!["a b".into()],
                    ..args()
                },
            ),
            (
                "past expiry",
                Args {
                    expiry: Some("0s".into()),
                    ..args()
                },
            ),
            (
                "constraints not JSON",
                Args {
                    constraints: Some("{nope".into()),
                    ..args()
                },
            ),
            (
                "constraints not an object",
                Args {
                    constraints: Some("[1]".into()),
                    ..args()
                },
            ),
            (
                "constraint not an object",
                Args {
                    constraints: Some(r#"{"cap": 5}"#.into()),
                    ..args()
                },
            ),
        ];
        for (name, args) in cases {
            let err = validate(args, 1_000)
                .err()
                .unwrap_or_else(|| panic!("{name}: accepted"));
            assert_eq!(err.code(), "invalid_argument", "{name}");
        }
    }

    #[test]
    fn seed_example_is_accepted() {
        let spec = validate(
            Args {
                scopes: vec!["safe-agreement".into()],
                tier: TierArg::Cosign,
                require_signature: true,
                expiry: Some("30d".into()),
                constraints: Some(
                    r#"{"valuation_cap": {"min": 5000000, "max": 15000000}, "discount_rate": {"min": 0.15}}"#
                        .into(),
                ),
            },
            1_000,
        )
        .unwrap();
        assert_eq!(spec.scopes, ["safe-agreement"]);
        assert_eq!(spec.expires_at, Some(1_000 + 30 * 86_400));
        assert_eq!(spec.constraints.len(), 2);
    }
}
