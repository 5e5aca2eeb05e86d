//! The engine, table-driven.

use serde_json::{Map, Value, json};

use super::*;

const NOW: i64 = 1_000;

fn terms(extra: Value) -> Terms {
    let mut base = json!({
        "scopes": ["git"],
        "tier": "autonomous",
        "require_signature": false,
        "constraints": {},
        "hard_rules": {},
        "soft_rules": {},
        "expires_at": null,
    });
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(base).unwrap()
}

fn grant(id: &str, grantee: &str, extra: Value) -> Authorization {
    Authorization {
        authorization_id: id.into(),
        key_id: "ak_k".into(),
        grantee: grantee.into(),
        principal: "usr_owner".into(),
        terms: terms(extra),
        created_at: 0,
        revoked_at: None,
    }
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

struct Case {
    name: &'static str,
    revoked_key: bool,
    grants: Vec<Authorization>,
    requester: &'static str,
    namespace: &'static str,
    metadata: Value,
    context: Value,
    /// `Ok(authorization id)` for allow, `Err(rule)` for deny; cosign cases are separate.
    expected: Result<&'static str, Rule>,
}

fn case(
    name: &'static str,
    grants: Vec<Authorization>,
    expected: Result<&'static str, Rule>,
) -> Case {
    Case {
        name,
        revoked_key: false,
        grants,
        requester: "usr_agent",
        namespace: "git",
        metadata: json!({}),
        context: json!({}),
        expected,
    }
}

fn run(c: &Case) -> Decision {
    let key = KeyFacts {
        key_id: "ak_k",
        owner: "usr_owner",
        revoked: c.revoked_key,
    };
    let (metadata, context) = (object(c.metadata.clone()), object(c.context.clone()));
    let request = SignRequest {
        requester: c.requester,
        namespace: c.namespace,
        metadata: &metadata,
        context: &context,
    };
    decide(key, &c.grants, &request, NOW)
}

#[test]
fn table() {
    let safe = json!({
        "scopes": ["safe-agreement"],
        "constraints": {"valuation_cap": {"min": 5000000, "max": 15000000}, "discount_rate": {"min": 0.15}},
    });
    let git_rules = json!({"hard_rules": {"branch": ["main", "release/*"], "repository": ["github.com/acme/*"]}});
    let mut revoked = grant("az_1", "usr_agent", json!({}));
    revoked.revoked_at = Some(5);

    let cases = vec![
        case(
            "plain grant",
            vec![grant("az_1", "usr_agent", json!({}))],
            Ok("az_1"),
        ),
        Case {
            requester: "usr_stranger",
            ..case(
                "a stranger is told the key is unknown",
                vec![grant("az_1", "usr_agent", json!({}))],
                Err(Rule::UnknownKey),
            )
        },
        Case {
            requester: "usr_owner",
            ..case(
                "the owner without a grant may not sign",
                vec![grant("az_1", "usr_agent", json!({}))],
                Err(Rule::NotAuthorized),
            )
        },
        Case {
            revoked_key: true,
            ..case(
                "a revoked key",
                vec![grant("az_1", "usr_agent", json!({}))],
                Err(Rule::KeyRevoked),
            )
        },
        case(
            "a revoked grant",
            vec![revoked.clone()],
            Err(Rule::AuthorizationRevoked),
        ),
        case(
            "an expired grant",
            vec![grant("az_1", "usr_agent", json!({"expires_at": NOW}))],
            Err(Rule::AuthorizationExpired),
        ),
        case(
            "a grant expiring later",
            vec![grant("az_1", "usr_agent", json!({"expires_at": NOW + 1}))],
            Ok("az_1"),
        ),
        Case {
            namespace: "file",
            ..case(
                "out of scope",
                vec![grant("az_1", "usr_agent", json!({}))],
                Err(Rule::Scope),
            )
        },
        Case {
            namespace: "safe-agreement",
            metadata: json!({"valuation_cap": 8000000, "discount_rate": 0.20}),
            ..case(
                "constraints met",
                vec![grant("az_1", "usr_agent", safe.clone())],
                Ok("az_1"),
            )
        },
        Case {
            namespace: "safe-agreement",
            metadata: json!({"valuation_cap": 15000000, "discount_rate": 0.15}),
            ..case(
                "bounds are inclusive",
                vec![grant("az_1", "usr_agent", safe.clone())],
                Ok("az_1"),
            )
        },
        Case {
            namespace: "safe-agreement",
            metadata: json!({"valuation_cap": 16000000, "discount_rate": 0.20}),
            ..case(
                "above the range",
                vec![grant("az_1", "usr_agent", safe.clone())],
                Err(Rule::Constraint),
            )
        },
        Case {
            namespace: "safe-agreement",
            metadata: json!({"valuation_cap": 8000000}),
            ..case(
                "a constrained field missing",
                vec![grant("az_1", "usr_agent", safe.clone())],
                Err(Rule::Constraint),
            )
        },
        Case {
            namespace: "safe-agreement",
            metadata: json!({"valuation_cap": "8000000", "discount_rate": 0.2}),
            ..case(
                "a constrained field of the wrong type",
                vec![grant("az_1", "usr_agent", safe.clone())],
                Err(Rule::Constraint),
            )
        },
        Case {
            context: json!({"branch": "release/1.4", "repository": "github.com/acme/app"}),
            ..case(
                "hard rules met",
                vec![grant("az_1", "usr_agent", git_rules.clone())],
                Ok("az_1"),
            )
        },
        Case {
            context: json!({"branch": "feature/x", "repository": "github.com/acme/app"}),
            ..case(
                "a hard rule broken",
                vec![grant("az_1", "usr_agent", git_rules.clone())],
                Err(Rule::HardRule),
            )
        },
        Case {
            context: json!({"repository": "github.com/acme/app"}),
            ..case(
                "a hard rule's fact not stated",
                vec![grant("az_1", "usr_agent", git_rules.clone())],
                Err(Rule::HardRule),
            )
        },
        Case {
            metadata: json!({"branch": "main"}),
            context: json!({"branch": "dev", "repository": "github.com/acme/app"}),
            ..case(
                "context wins over metadata",
                vec![grant("az_1", "usr_agent", git_rules.clone())],
                Err(Rule::HardRule),
            )
        },
        // Several authorizations: any one that passes grants.
        Case {
            context: json!({"branch": "dev", "repository": "github.com/acme/app"}),
            ..case(
                "a second grant allows what the first refuses",
                vec![
                    grant("az_1", "usr_agent", git_rules.clone()),
                    grant("az_2", "usr_agent", json!({})),
                ],
                Ok("az_2"),
            )
        },
        case(
            "the first passing grant is named",
            vec![
                grant("az_1", "usr_agent", json!({})),
                grant("az_2", "usr_agent", json!({})),
            ],
            Ok("az_1"),
        ),
        case(
            "autonomous beats cosign",
            vec![
                grant("az_1", "usr_agent", json!({"tier": "cosign"})),
                grant("az_2", "usr_agent", json!({})),
            ],
            Ok("az_2"),
        ),
        case(
            "another grantee's authorization does not count",
            vec![
                grant("az_1", "usr_other", json!({})),
                grant("az_2", "usr_agent", json!({"scopes": ["file"]})),
            ],
            Err(Rule::Scope),
        ),
        Case {
            namespace: "safe-agreement",
            metadata: json!({"valuation_cap": 1}),
            ..case(
                "the active in-scope grant's failure is reported, not the revoked one's",
                vec![revoked.clone(), grant("az_2", "usr_agent", safe.clone())],
                Err(Rule::Constraint),
            )
        },
        Case {
            namespace: "file",
            ..case(
                "nothing in scope reports scope",
                vec![revoked, grant("az_2", "usr_agent", json!({}))],
                Err(Rule::Scope),
            )
        },
    ];
    for c in &cases {
        let decision = run(c);
        let got = match &decision {
            Decision::Allow {
                authorization_id, ..
            } => Ok(authorization_id.as_str()),
            Decision::Deny { rule, .. } => Err(*rule),
            Decision::NeedsApproval { .. } => panic!("{}: needs approval", c.name),
        };
        assert_eq!(got, c.expected, "{}: {decision:?}", c.name);
    }
}

#[test]
fn cosign_waits_for_the_principal_and_prefers_no_drawn_signature() {
    let c = case(
        "cosign",
        vec![
            grant(
                "az_1",
                "usr_agent",
                json!({"tier": "cosign", "require_signature": true}),
            ),
            grant("az_2", "usr_agent", json!({"tier": "cosign"})),
        ],
        Ok(""),
    );
    match run(&c) {
        Decision::NeedsApproval {
            authorization_id,
            principal,
            require_signature,
            ..
        } => {
            assert_eq!(authorization_id, "az_2");
            assert_eq!(principal, "usr_owner");
            assert!(!require_signature);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn soft_rules_warn_and_every_check_is_recorded() {
    let c = Case {
        metadata: json!({"amount": 20000}),
        context: json!({"branch": "dev"}),
        ..case(
            "soft",
            vec![grant(
                "az_1",
                "usr_agent",
                json!({"soft_rules": {"amount": {"max": 10000}, "branch": ["main"]}}),
            )],
            Ok("az_1"),
        )
    };
    match run(&c) {
        Decision::Allow {
            warnings,
            evaluated,
            ..
        } => {
            assert_eq!(warnings.len(), 2, "{warnings:?}");
            assert!(warnings[0].contains("amount"), "{warnings:?}");
            let checks: Vec<_> = evaluated[0]
                .checks
                .iter()
                .map(|k| (k.check.as_str(), k.passed))
                .collect();
            assert_eq!(
                checks,
                [
                    ("revoked", true),
                    ("expiry", true),
                    ("scope", true),
                    ("soft:amount", false),
                    ("soft:branch", false)
                ]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn terms_round_trip_through_storage() {
    let t = terms(json!({
        "constraints": {"cap": {"min": 1, "max": 2.5}, "kind": {"allowed": ["a"]}, "ok": {"required": false}},
        "hard_rules": {"branch": ["main"]},
        "soft_rules": {"amount": {"max": 10}},
    }));
    let stored = serde_json::to_string(&t).unwrap();
    assert_eq!(serde_json::from_str::<Terms>(&stored).unwrap(), t);
}

#[test]
fn terms_are_checked_as_granted() {
    // Scopes are trimmed and deduplicated; none means git.
    let t = terms(json!({"scopes": []})).checked().unwrap();
    assert_eq!(t.scopes, ["git"]);
    let t = terms(json!({"scopes": [" file ", "file", "git"]}))
        .checked()
        .unwrap();
    assert_eq!(t.scopes, ["file", "git"]);
    // The seed's `git-commit` is the namespace git signs in.
    let t = terms(json!({"scopes": ["git-commit", "git", "nda"]}))
        .checked()
        .unwrap();
    assert_eq!(t.scopes, ["git", "nda"]);
    assert_eq!(aliases_of("git").collect::<Vec<_>>(), ["git-commit"]);
    assert_eq!(aliases_of("nda").count(), 0);
    let cosigned = json!({"tier": "cosign", "require_signature": true});
    assert!(terms(cosigned).checked().unwrap().require_signature);

    let long = "s".repeat(MAX_SCOPE + 1);
    let refused = [
        (json!({"scopes": ["a b"]}), "scope", "may hold only"),
        (json!({"scopes": [""]}), "scope", "1 to 64"),
        (json!({"scopes": [long]}), "scope", "1 to 64"),
        (
            json!({"require_signature": true}),
            "require_signature",
            "cosign tier",
        ),
        (
            json!({"expires_at": 253_402_300_800_i64}),
            "expires_at",
            "10 years",
        ),
    ];
    for (extra, field, words) in refused {
        let refusal = terms(extra.clone()).checked().unwrap_err();
        assert_eq!(refusal.field, field, "{extra}");
        assert!(
            refusal.reason.contains(words),
            "{extra}: {}",
            refusal.reason
        );
    }
}

#[test]
fn the_seeds_git_commit_means_git() {
    // A record made before the word was read as a namespace still signs commits, and a request
    // in the seed's word is one in the namespace.
    for (scope, namespace) in [
        ("git-commit", "git"),
        ("git", "git-commit"),
        ("git-commit", "git-commit"),
    ] {
        let mut c = case(
            "alias",
            vec![grant("az_1", "usr_agent", json!({"scopes": [scope]}))],
            Ok("az_1"),
        );
        c.namespace = namespace;
        assert!(
            matches!(run(&c), Decision::Allow { .. }),
            "{scope} / {namespace}"
        );
    }
    let mut c = case(
        "other",
        vec![grant(
            "az_1",
            "usr_agent",
            json!({"scopes": ["git-commit"]}),
        )],
        Err(Rule::Scope),
    );
    c.namespace = "file";
    assert!(matches!(
        run(&c),
        Decision::Deny {
            rule: Rule::Scope,
            ..
        }
    ));
}
