//! Co-signing over SSH: an agent's request waits, its principal approves or denies, the
//! envelope carries the signature; a request resolves once, whoever races.

use crate::common::{Appliance, User, ssh_keygen_verify};

struct Setup {
    appliance: Appliance,
    human: User,
    agent: User,
    key: String,
    public_key: String,
}

/// A human's key, granted to an agent in the cosign tier (`extra` adds grant flags).
fn setup(extra: &str) -> Setup {
    let appliance = Appliance::start();
    let human = appliance.user("human");
    let agent = appliance.user("agent");
    let agent_id = agent.cmd("whoami").ok()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    agent.accept(&human);
    let created = human.cmd("create-key --scope safe-agreement");
    let key = created.ok()["key_id"].as_str().unwrap().to_owned();
    let public_key = created.json["public_key"].as_str().unwrap().to_owned();
    human
        .cmd(&format!(
            "authorize --key-id {key} --scope safe-agreement --tier cosign --grantee {agent_id} {extra}"
        ))
        .ok();
    Setup {
        appliance,
        human,
        agent,
        key,
        public_key,
    }
}

const TERMS: &[u8] = b"SAFE: valuation cap 8,000,000; discount 20%";

fn request(s: &Setup) -> String {
    let reply = s.agent.run(
        &format!(
            r#"sign --type safe-agreement --key-id {} --metadata {{"valuation_cap": 8000000}}"#,
            s.key
        ),
        TERMS,
    );
    let body = reply.ok();
    assert_eq!(body["status"], "pending_cosign");
    let url = body["approval_url"].as_str().unwrap();
    let pending_id = body["pending_id"].as_str().unwrap().to_owned();
    assert!(pending_id.starts_with("pnd_"));
    // The page's address only: nothing in it stands for the principal.
    assert!(url.ends_with(&format!("/approve/{pending_id}")), "{url}");
    pending_id
}

#[test]
fn the_principal_approves_and_the_requester_gets_a_verifiable_signature() {
    let s = setup("");
    let id = request(&s);

    let waiting = s.human.cmd("pending");
    let to_decide = waiting.ok()["to_decide"].as_array().unwrap();
    assert_eq!(to_decide.len(), 1);
    assert_eq!(to_decide[0]["metadata"]["valuation_cap"], 8000000);
    assert_eq!(
        s.agent.cmd("pending").ok()["requested"][0]["pending_id"],
        id.as_str()
    );
    let before = s.agent.cmd(&format!("get-envelope --id {id}"));
    assert_eq!(before.ok()["status"], "pending");
    assert!(before.json["signature"].is_null());

    // Only the principal decides.
    s.agent
        .cmd(&format!("approve --id {id} --confirm"))
        .failed_with("not_principal");
    // A SAFE is a legal agreement: without --confirm the reply is the seed's disclosure, with
    // the terms, and nothing is approved.
    let disclosed = s.human.cmd(&format!("approve --id {id}"));
    disclosed.failed_with("consent_required");
    assert_eq!(disclosed.json["consent_required"], true);
    assert_eq!(disclosed.json["pending_id"], id.as_str());
    assert_eq!(disclosed.json["doc_type"], "safe-agreement");
    assert_eq!(disclosed.json["metadata"]["valuation_cap"], 8000000);
    let text = disclosed.json["disclosure"].as_str().unwrap();
    assert!(text.contains("ESIGN Act (15 U.S.C. 7001)"), "{text}");
    assert!(
        text.ends_with("Re-run with --confirm to approve."),
        "{text}"
    );
    assert_eq!(
        s.agent.cmd(&format!("get-envelope --id {id}")).ok()["status"],
        "pending"
    );
    let approved = s.human.cmd(&format!("approve --id {id} --confirm"));
    assert_eq!(approved.ok()["status"], "approved");
    // The approval's entry names the disclosure it was given under.
    let entries = s.human.cmd("audit-entries").ok()["entries"].clone();
    let approval = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["entry"]["action"] == "approve")
        .unwrap_or_else(|| panic!("{entries:#}"));
    assert!(
        approval["entry"]["consent"]
            .as_str()
            .is_some_and(|c| c.starts_with("esign-1:sha256:")),
        "{approval:#}"
    );

    let envelope = s.agent.cmd(&format!("get-envelope --id {id}"));
    let signature = envelope.ok()["signature"].as_str().unwrap().to_owned();
    let verified = ssh_keygen_verify(
        s.appliance.dir.path(),
        "human",
        &s.public_key,
        "safe-agreement",
        &signature,
        TERMS,
    );
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    s.human
        .cmd(&format!("approve --id {id} --confirm"))
        .failed_with("already_resolved");
    s.human
        .cmd(&format!("deny --id {id}"))
        .failed_with("already_resolved");
    let outsider = s.appliance.user("outsider");
    outsider
        .cmd(&format!("get-envelope --id {id}"))
        .failed_with("unknown_request");
    outsider
        .cmd(&format!("approve --id {id}"))
        .failed_with("unknown_request");
    outsider
        .cmd(&format!("approve --id {id} --confirm"))
        .failed_with("unknown_request");
    s.human
        .cmd("approve --id pnd_aaaaaaaaaaaaaaaaaaaaaaaaaa")
        .failed_with("unknown_request");
}

#[test]
fn denial_revocation_and_the_drawn_signature_requirement() {
    let s = setup("");
    let denied = request(&s);
    let reply = s
        .human
        .cmd(&format!("deny --id {denied} --reason 'cap too low'"));
    assert_eq!(reply.ok()["status"], "denied");
    let envelope = s.agent.cmd(&format!("get-envelope --id {denied}"));
    assert_eq!(envelope.ok()["reason"], "cap too low");
    assert!(envelope.json["signature"].is_null());

    // Revoked after the request: approval re-runs the engine and refuses.
    let revoked = request(&s);
    s.human.cmd(&format!("revoke --key-id {}", s.key)).ok();
    s.human
        .cmd(&format!("approve --id {revoked} --confirm"))
        .failed_with("key_revoked");
    assert_eq!(
        s.agent.cmd(&format!("get-envelope --id {revoked}")).ok()["status"],
        "denied"
    );

    let drawn = setup("--require-signature");
    let id = request(&drawn);
    let refused = drawn.human.cmd(&format!("approve --id {id}"));
    let message = refused.failed_with("signature_required");
    assert!(
        message.contains("this approval requires a handwritten signature"),
        "{message}"
    );
    assert!(message.contains(&format!("/approve/{id}")), "{message}");
    assert_eq!(
        drawn.agent.cmd(&format!("get-envelope --id {id}")).ok()["status"],
        "pending"
    );
}

#[test]
fn a_request_resolves_exactly_once_under_racing_approvals_denials_and_revocations() {
    let s = setup("");
    for round in 0..3 {
        let id = request(&s);
        let racers: Vec<_> = (0..8)
            .map(|n| {
                let human = s.human.clone();
                let id = id.clone();
                std::thread::spawn(move || {
                    let command = if n % 2 == 0 {
                        "approve --confirm"
                    } else {
                        "deny"
                    };
                    human.cmd(&format!("{command} --id {id}"))
                })
            })
            .collect();
        let replies: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let winners: Vec<_> = replies.iter().filter(|r| r.status == 0).collect();
        assert_eq!(winners.len(), 1, "round {round}: {replies:?}");
        assert!(
            replies
                .iter()
                .filter(|r| r.status != 0)
                .all(|r| r.error_code() == "already_resolved"),
            "{replies:?}"
        );
        let envelope = s.agent.cmd(&format!("get-envelope --id {id}"));
        let status = envelope.ok()["status"].as_str().unwrap();
        assert_eq!(status, winners[0].json["status"].as_str().unwrap());
        assert_eq!(envelope.json["signature"].is_string(), status == "approved");
    }
    // With a revocation in the race, the outcome is one of them and never a signature after it.
    let id = request(&s);
    let approve = {
        let (human, id) = (s.human.clone(), id.clone());
        std::thread::spawn(move || human.cmd(&format!("approve --confirm --id {id}")))
    };
    let revoke = s.human.cmd(&format!("revoke --key-id {}", s.key));
    let approve = approve.join().unwrap();
    assert_eq!(revoke.status, 0, "{revoke:?}");
    let envelope = s.agent.cmd(&format!("get-envelope --id {id}"));
    if approve.status == 0 {
        assert!(envelope.ok()["signature"].is_string());
    } else {
        assert!(envelope.ok()["signature"].is_null(), "{approve:?}");
    }
}

#[test]
fn the_requester_cannot_approve_its_own_cosigned_request() {
    let appliance = Appliance::start();
    let solo = appliance.user("solo");
    let key = solo.create_key("--tier cosign");
    let reply = solo.run(&format!("sign --key-id {key}"), b"x");
    let id = reply.ok()["pending_id"].as_str().unwrap().to_owned();
    solo.cmd(&format!("approve --id {id}"))
        .failed_with("self_approval");
}
