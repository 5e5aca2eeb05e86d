//! The sshsign seed's words work as its users type them: `--scope git-commit` and `sign --type
//! git-commit` sign git commits, `sign` without `--key-id` uses the caller's first key that
//! covers the namespace, `approve --confirm` and the disclosure, the sign reply's audit entry,
//! and the seed's troubleshooting messages word for word.

use serde_json::Value;

use crate::approvals::user_id;
use crate::common::{Appliance, assert_git_signature};

const COMMIT: &[u8] =
    b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor a <a@x> 0 +0000\n\nseed\n";

#[test]
fn git_commit_is_the_git_namespace_and_sign_finds_the_key() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");

    // Nothing covers git yet: the error says what to do.
    let none = alice.run("sign --type git-commit", COMMIT);
    let message = none.failed_with("no_signing_key");
    assert!(message.contains("create-key --scope git"), "{message}");

    let created = alice.cmd("create-key --scope git-commit");
    let git_key = created.ok()["key_id"].as_str().unwrap().to_owned();
    let public_key = created.json["public_key"].as_str().unwrap().to_owned();
    let scopes = &created.json["authorization"];
    assert_eq!(scopes["scopes"], serde_json::json!(["git"]), "{scopes}");
    assert_eq!(scopes["scope_aliases"]["git"], "git-commit", "{scopes}");
    // `keys` shows both words.
    let listed = alice.cmd("keys");
    let auth = &listed.ok()["keys"][0]["authorizations"][0];
    assert_eq!(auth["scopes"][0], "git");
    assert_eq!(auth["scope_aliases"]["git"], "git-commit");

    // A later key for files; git still picks the first, files the one that covers them.
    let file_key = alice.create_key("--scope file");
    let signed = alice.run("sign --type git-commit", COMMIT);
    let body = signed.ok();
    assert_eq!(body["key_id"], git_key.as_str());
    assert_eq!(body["namespace"], "git");
    assert_git_signature(
        appliance.dir.path(),
        &public_key,
        body["signature"].as_str().unwrap(),
        COMMIT,
    );
    assert_eq!(
        alice.run("sign --type file", b"x").ok()["key_id"],
        file_key.as_str()
    );
    // With no --type the seed signs git commits too.
    assert_eq!(alice.run("sign", COMMIT).ok()["key_id"], git_key.as_str());
    // `verify` takes the seed's word as well.
    let verified = alice.run(
        &format!(
            "verify --type git-commit --signature '{}'",
            body["signature"].as_str().unwrap()
        ),
        COMMIT,
    );
    assert_eq!(verified.ok()["key_id"], git_key.as_str());

    // The reply names its audit entry: the client asks for its inclusion proof.
    let audit = &body["audit"];
    let index = audit["index"].as_u64().unwrap();
    assert_eq!(audit["size"].as_u64().unwrap(), index + 1);
    let proof = alice.cmd(&format!("audit-proof --index {index}"));
    let proven = proof.ok();
    assert!(proven["size"].as_u64().unwrap() > index, "{proven}");
    let entry: Value = serde_json::from_str(proven["entry"].as_str().unwrap()).unwrap();
    assert_eq!(entry["action"], "sign");
    assert_eq!(entry["key_id"], git_key.as_str());

    // A revoked key is passed over; with none left the error comes back.
    alice.cmd(&format!("revoke --key-id {git_key}")).ok();
    alice
        .run("sign --type git-commit", COMMIT)
        .failed_with("no_signing_key");
    let newer = alice.create_key("--scope git");
    assert_eq!(
        alice.run("sign --type git", COMMIT).ok()["key_id"],
        newer.as_str()
    );
}

#[test]
fn a_granted_key_is_used_when_the_caller_owns_none_that_covers() {
    let appliance = Appliance::start();
    let owner = appliance.user("owner");
    let agent = appliance.user("agent");
    agent.accept(&owner);
    let key = owner.create_key("--scope nda");
    // The grant in the seed's word for git commits; the agent's own key covers only files.
    owner
        .cmd(&format!(
            "authorize --key-id {key} --scope git-commit --grantee {}",
            user_id(&agent)
        ))
        .ok();
    agent.create_key("--scope file");
    let signed = agent.run("sign --type git-commit", COMMIT);
    assert_eq!(signed.ok()["key_id"], key.as_str());
    // The owner's own authorization covers only NDAs: git is not theirs to sign.
    owner
        .run("sign --type git", COMMIT)
        .failed_with("no_signing_key");
}

#[test]
fn the_seeds_troubleshooting_messages_appear_word_for_word() {
    let appliance = Appliance::start();
    let founder = appliance.user("founder");

    let unknown = founder.run("sign --key-id ak_doesnotexist00000000000", b"x");
    let message = unknown.failed_with("unknown_key");
    assert!(message.contains("unknown key id"), "{message}");

    let opened = founder.cmd("log-offer --round 0 --from founder --type offer");
    let id = opened.ok()["negotiation_id"].as_str().unwrap().to_owned();
    let again = founder.cmd(&format!(
        "log-offer --negotiation-id {id} --round 1 --from founder --type counter"
    ));
    let message = again.failed_with("not_your_turn");
    assert!(message.contains("not your turn"), "{message}");
}

#[test]
fn confirm_is_accepted_and_changes_nothing_outside_legal_agreements() {
    let appliance = Appliance::start();
    let human = appliance.user("human");
    let agent = appliance.user("agent");
    agent.accept(&human);
    let key = human.create_key("--scope deploy");
    human
        .cmd(&format!(
            "authorize --key-id {key} --scope deploy --tier cosign --grantee {}",
            user_id(&agent)
        ))
        .ok();
    let ask = || {
        let reply = agent.run(&format!("sign --type deploy --key-id {key}"), b"v1.2");
        let body = reply.ok();
        assert_eq!(body["status"], "pending_cosign");
        assert!(body["audit"]["index"].is_u64(), "{body}");
        body["pending_id"].as_str().unwrap().to_owned()
    };
    let plain = ask();
    assert_eq!(
        human.cmd(&format!("approve --id {plain}")).ok()["status"],
        "approved"
    );
    let confirmed = ask();
    assert_eq!(
        human
            .cmd(&format!("approve --id {confirmed} --confirm"))
            .ok()["status"],
        "approved"
    );
    // No disclosure was asked for, so none is recorded.
    let entries = human.cmd("audit-entries").ok()["entries"].clone();
    let approvals: Vec<&Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["action"] == "approve")
        .collect();
    assert_eq!(approvals.len(), 2, "{entries:#}");
    assert!(approvals.iter().all(|e| e["entry"]["consent"].is_null()));
}
