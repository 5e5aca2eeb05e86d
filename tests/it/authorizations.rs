//! Authorizations end to end: typed constraints, grants to other users, several authorizations,
//! hard rules from the git shim, soft rules, revoking one authorization, sealed storage.

use serde_json::Value;

use crate::common::{Appliance, User};

const SEED_CONSTRAINTS: &str =
    r#"{"valuation_cap": {"min": 5000000, "max": 15000000}, "discount_rate": {"min": 0.15}}"#;

fn sign(user: &User, key_id: &str, namespace: &str, metadata: &str) -> crate::common::Reply {
    user.run(
        &format!("sign --type {namespace} --key-id {key_id} --metadata '{metadata}'"),
        b"SAFE agreement v3",
    )
}

fn user_id(user: &User) -> String {
    user.cmd("whoami").ok()["user_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn typed_constraints_decide_signatures() {
    let appliance = Appliance::start();
    let founder = appliance.user("founder");
    let created = founder.cmd(&format!(
        "create-key --scope safe-agreement --constraints {SEED_CONSTRAINTS}"
    ));
    let key = created.ok()["key_id"].as_str().unwrap().to_owned();
    let authorization = &created.json["authorization"];
    assert_eq!(authorization["constraints"]["discount_rate"]["min"], 0.15);
    assert_eq!(authorization["grantee"], authorization["principal"]);

    let ok = sign(
        &founder,
        &key,
        "safe-agreement",
        r#"{"valuation_cap": 8000000, "discount_rate": 0.20}"#,
    );
    assert_eq!(ok.ok()["status"], "signed");
    // Bounds are inclusive and compared exactly.
    sign(
        &founder,
        &key,
        "safe-agreement",
        r#"{"valuation_cap": 15000000, "discount_rate": 0.15}"#,
    )
    .ok();
    sign(
        &founder,
        &key,
        "safe-agreement",
        r#"{"valuation_cap": 1.5e7, "discount_rate": 1.5e-1}"#,
    )
    .ok();
    let cases = [
        (
            r#"{"valuation_cap": 15000001, "discount_rate": 0.2}"#,
            "valuation_cap",
        ),
        (
            r#"{"valuation_cap": 8000000, "discount_rate": 0.14999999999999999999}"#,
            "discount_rate",
        ),
        (r#"{"valuation_cap": 8000000}"#, "missing"),
        (
            r#"{"valuation_cap": "8000000", "discount_rate": 0.2}"#,
            "must be a number",
        ),
    ];
    for (metadata, why) in cases {
        let refused = sign(&founder, &key, "safe-agreement", metadata);
        let message = refused.failed_with("constraint_violation");
        assert!(message.contains(why), "{metadata}: {message}");
    }
    sign(&founder, &key, "git", "{}").failed_with("scope_denied");
    founder
        .run(
            &format!("sign --type safe-agreement --key-id {key} --metadata [1]"),
            b"x",
        )
        .failed_with("invalid_argument");
    let huge = format!(r#"{{"note": "{}"}}"#, "x".repeat(70_000));
    sign(&founder, &key, "safe-agreement", &huge).failed_with("invalid_argument");
}

#[test]
fn a_key_is_granted_to_an_agent_and_one_grant_revoked_without_the_key() {
    let appliance = Appliance::start();
    let human = appliance.user("human");
    let agent = appliance.user("agent");
    let stranger = appliance.user("stranger");
    let agent_id = user_id(&agent);
    user_id(&stranger);

    // A key for the human, and a grant to the agent (which accepts them) by its SSH key
    // fingerprint.
    agent.accept(&human);
    let key = human.create_key("--scope release");
    let fingerprint = agent.cmd("whoami").ok()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let granted = human.cmd(&format!(
        "authorize --key-id {key} --scope release --grantee {fingerprint}"
    ));
    let grant_id = granted.ok()["authorization_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(granted.json["grantee"], agent_id.as_str());

    // The agent sees the key it was granted, with its own authorization only.
    let keys = agent.cmd("keys");
    let listed = &keys.ok()["keys"][0];
    assert_eq!(listed["role"], "grantee");
    assert_eq!(listed["authorizations"].as_array().unwrap().len(), 1);
    assert_eq!(
        agent.cmd(&format!("authorizations --key-id {key}")).ok()["authorizations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        human.cmd(&format!("authorizations --key-id {key}")).ok()["authorizations"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    stranger
        .cmd(&format!("authorizations --key-id {key}"))
        .failed_with("unknown_key");

    let signed = agent.run(&format!("sign --type release --key-id {key}"), b"v1.0");
    assert_eq!(signed.ok()["authorization_id"], grant_id.as_str());
    stranger
        .run(&format!("sign --type release --key-id {key}"), b"v1.0")
        .failed_with("unknown_key");

    // Only the owner grants and revokes.
    agent
        .cmd(&format!("authorize --key-id {key} --grantee {agent_id}"))
        .failed_with("unknown_key");
    agent
        .cmd(&format!("revoke-authorization --id {grant_id}"))
        .failed_with("unknown_authorization");
    let revoked = human.cmd(&format!("revoke-authorization --id {grant_id}"));
    assert_eq!(revoked.ok()["status"], "revoked");
    human
        .cmd(&format!("revoke-authorization --id {grant_id}"))
        .failed_with("authorization_revoked");

    agent
        .run(&format!("sign --type release --key-id {key}"), b"v1.1")
        .failed_with("authorization_revoked");
    // The key and the human's own authorization are untouched.
    human
        .run(&format!("sign --type release --key-id {key}"), b"v1.1")
        .ok();
    human
        .cmd("authorize --key-id ak_aaaaaaaaaaaaaaaaaaaaaaaaaa")
        .failed_with("unknown_key");
    human
        .cmd(&format!("authorize --key-id {key} --grantee usr_nobody"))
        .failed_with("unknown_user");
}

#[test]
fn several_authorizations_grant_independently_and_expire() {
    let appliance = Appliance::start();
    let owner = appliance.user("owner");
    let created_at = std::time::Instant::now();
    let created = owner.cmd("create-key --scope file --expiry 4s");
    let key = created.ok()["key_id"].as_str().unwrap().to_owned();
    let narrow = owner.cmd(&format!(
        r#"authorize --key-id {key} --scope file --constraints {{"amount": {{"max": 10}}}}"#
    ));
    let narrow_id = narrow.ok()["authorization_id"].as_str().unwrap().to_owned();

    // While the first is live, it grants what the second would refuse.
    owner
        .run(
            &format!(r#"sign --type file --key-id {key} --metadata {{"amount": 50}}"#),
            b"x",
        )
        .ok();
    std::thread::sleep(std::time::Duration::from_millis(5100).saturating_sub(created_at.elapsed()));
    // Expired: only the constrained one is left.
    let refused = owner.run(
        &format!(r#"sign --type file --key-id {key} --metadata {{"amount": 50}}"#),
        b"x",
    );
    refused.failed_with("constraint_violation");
    let signed = owner.run(
        &format!(r#"sign --type file --key-id {key} --metadata {{"amount": 10}}"#),
        b"x",
    );
    assert_eq!(signed.ok()["authorization_id"], narrow_id.as_str());
    let listed = owner.cmd(&format!("authorizations --key-id {key}"));
    let statuses: Vec<&str> = listed.ok()["authorizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["expired", "active"]);
}

#[test]
fn hard_rules_see_the_branch_and_repository_the_shim_sends_and_soft_rules_warn() {
    let appliance = Appliance::start();
    let dev = appliance.user("dev");
    let key = dev.create_key(
        r#"--hard-rules {"branch": ["main", "release/*"], "repository": ["github.com/acme/*"]} --soft-rules {"branch": ["main"]}"#,
    );
    // Stated through flags, as the shim states them.
    let main = dev.run(
        &format!("sign --key-id {key} --branch main --repository github.com/acme/app"),
        b"x",
    );
    assert_eq!(main.ok()["warnings"].as_array().unwrap().len(), 0);
    let release = dev.run(
        &format!("sign --key-id {key} --branch release/2 --repository github.com/acme/app"),
        b"x",
    );
    let warnings = release.ok()["warnings"].as_array().unwrap().clone();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].as_str().unwrap().contains("branch"));
    dev.run(
        &format!("sign --key-id {key} --branch feature/x --repository github.com/acme/app"),
        b"x",
    )
    .failed_with("hard_rule_violation");
    dev.run(
        &format!("sign --key-id {key} --branch main --repository github.com/evil/app"),
        b"x",
    )
    .failed_with("hard_rule_violation");
    dev.run(&format!("sign --key-id {key}"), b"x")
        .failed_with("hard_rule_violation");

    // Through git: the shim sends the repository's remote and the current branch.
    let repo = appliance.dir.path().join("repo");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(&repo)
            .args(args)
            .env("HOME", appliance.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .envs(dev.shim_env())
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    std::path::Path::new(crate::common::SHIM)
                        .parent()
                        .unwrap()
                        .display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .output()
            .unwrap()
    };
    std::fs::create_dir_all(&repo).unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["config", "user.email", "dev@acme.example"],
        &["config", "user.name", "Dev"],
        &["config", "gpg.format", "ssh"],
        &["config", "gpg.ssh.program", "sshsign"],
        &["config", "user.signingkey", &key],
        &["remote", "add", "origin", "git@github.com:acme/app.git"],
    ] {
        assert!(git(args).status.success(), "{args:?}");
    }
    let on_main = git(&["commit", "-q", "-S", "--allow-empty", "-m", "on main"]);
    assert!(
        on_main.status.success(),
        "{}",
        String::from_utf8_lossy(&on_main.stderr)
    );
    assert!(git(&["checkout", "-q", "-b", "feature/x"]).status.success());
    let on_feature = git(&[
        "commit",
        "-q",
        "-S",
        "--allow-empty",
        "-m",
        "on a feature branch",
    ]);
    assert!(!on_feature.status.success());
    assert!(String::from_utf8_lossy(&on_feature.stderr).contains("hard_rule_violation"));
}

#[test]
fn terms_are_sealed_in_the_database() {
    let mut appliance = Appliance::start();
    let owner = appliance.user("owner");
    let key_id = owner.create_key(r#"--scope contract --constraints {"amount": {"max": 987654321}, "kind": {"allowed": ["zebra-terms"]}}"#);
    appliance.stop();
    let found = appliance.stored_text(&["987654321", "zebra-terms"]);
    assert!(found.is_empty(), "{found:?}");
    // The search does read the store: the key's record (not sealed) names it.
    assert!(!appliance.stored_text(&[&key_id]).is_empty());
    // And the appliance still reads them after a restart.
    appliance.restart();
    let owner = owner.at(&appliance);
    let keys: Value = owner.cmd("keys").ok().clone();
    let constraints = &keys["keys"][0]["authorizations"][0]["constraints"];
    assert_eq!(constraints["amount"]["max"], 987654321);
}
