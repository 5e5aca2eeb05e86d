//! Several SSH keys for one identity: a key joins only from a connection made with it (the
//! handshake is the proof), with a one-time code; `whoami` lists the keys; `unlink` removes one
//! (never the last); an agent's key may not decide or manage the identity; every step is in the
//! audit log.

use serde_json::Value;

use crate::approvals::user_id;
use crate::common::{Appliance, User};

fn code(reply: &Value) -> String {
    reply["code"].as_str().unwrap().to_owned()
}

fn fingerprint_of(user: &User) -> String {
    user.cmd("whoami").ok()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_key_joins_with_a_one_time_code_from_its_own_connection() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let alice_id = user_id(&alice);

    let started = alice.cmd("link start --label laptop");
    let body = started.ok();
    let the_code = code(body);
    assert_eq!(body["command"], format!("link finish --code {the_code}"));
    assert_eq!(body["agent"], false);

    // A key of another type (the handshake proves it, whatever it is), never seen before.
    let laptop = appliance.user_with_key_type("alice-laptop", "ecdsa");
    let joined = laptop.cmd(&format!("link finish --code {the_code}"));
    let who = joined.ok();
    assert_eq!(who["user_id"], alice_id.as_str());
    assert_eq!(who["agent"], false);
    let keys = who["ssh_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{who:#}");
    assert_eq!(keys[1]["label"], "laptop");
    assert_eq!(keys[1]["kind"], "person");
    assert_eq!(keys[1]["current"], true);
    assert!(
        keys[1]["public_key"]
            .as_str()
            .unwrap()
            .starts_with("ecdsa-sha2-nistp256 ")
    );
    // The new key acts as alice from now on, and alice's first key sees both.
    let key = laptop.create_key("--scope git");
    assert_eq!(alice.cmd("keys").ok()["keys"][0]["key_id"], key.as_str());
    assert_eq!(
        alice.cmd("whoami").ok()["ssh_keys"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The code works once.
    let third = appliance.user("third");
    let reused = third.cmd(&format!("link finish --code {the_code}"));
    assert!(
        reused
            .failed_with("forbidden")
            .contains("unknown, used or expired")
    );
    // A failed link made no identity: the key's first ordinary command makes its own.
    let third_id = user_id(&third);
    assert_ne!(third_id, alice_id);

    // A key that identifies someone is never moved, and no code is spent on it.
    let fresh = code(alice.cmd("link start").ok());
    let refused = third.cmd(&format!("link finish --code {fresh}"));
    assert!(
        refused
            .failed_with("forbidden")
            .contains("already identifies")
    );
    let fourth = appliance.user("fourth");
    // Codes are read as typed: case and dashes do not matter.
    let typed = fresh.to_uppercase().replace('-', "");
    assert_eq!(
        fourth.cmd(&format!("link finish --code {typed}")).ok()["user_id"],
        alice_id.as_str()
    );

    // Each step is in the log, before it took effect, readable by alice.
    let entries = alice.cmd("audit-entries").ok()["entries"].clone();
    let actions: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "ssh_key_link_start")
            .count(),
        2,
        "{actions:?}"
    );
    let linked: Vec<&Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["action"] == "ssh_key_link")
        .collect();
    assert_eq!(linked.len(), 2);
    assert_eq!(
        linked[0]["entry"]["subject_key"],
        fingerprint_of(&laptop).as_str()
    );
    assert_eq!(linked[0]["entry"]["actor"], alice_id.as_str());

    // Bad input: a clear error, nothing issued.
    alice
        .cmd(&format!("link start --label {}", "x".repeat(65)))
        .failed_with("invalid_argument");
    appliance
        .user("stranger")
        .cmd("link finish --code nope")
        .failed_with("forbidden");
}

#[test]
fn unlink_removes_a_key_but_never_the_last() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let alice_id = user_id(&alice);
    let laptop = appliance.user("laptop");
    laptop
        .cmd(&format!(
            "link finish --code {}",
            code(alice.cmd("link start").ok())
        ))
        .ok();
    let laptop_fp = fingerprint_of(&laptop);
    let alice_fp = fingerprint_of(&alice);

    alice
        .cmd("unlink --fingerprint SHA256:notakeyofanyone")
        .failed_with("invalid_argument");
    // A connection the laptop holds open (the client library's) stops acting for alice too.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let held = runtime
        .block_on(sshsign::client::Connection::connect(
            &appliance.client_config(&laptop),
        ))
        .unwrap();
    let whoami = |held: &sshsign::client::Connection| {
        let out = runtime
            .block_on(held.run(&["whoami".to_owned()], &[]))
            .unwrap();
        (
            out.exit_status,
            serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        )
    };
    assert_eq!(whoami(&held).1["user_id"], alice_id.as_str());
    let removed = alice.cmd(&format!("unlink --fingerprint {laptop_fp}"));
    assert_eq!(removed.ok()["fingerprint"], laptop_fp.as_str());
    let left = alice.cmd("whoami");
    assert_eq!(left.ok()["ssh_keys"].as_array().unwrap().len(), 1);
    // The last key stays.
    let last = alice.cmd(&format!("unlink --fingerprint {alice_fp}"));
    assert!(
        last.failed_with("invalid_argument")
            .contains("only SSH key")
    );
    let (status, cut) = whoami(&held);
    assert_ne!(status, 0, "{cut}");
    assert!(
        cut["error"]["message"]
            .as_str()
            .unwrap()
            .contains("was unlinked"),
        "{cut}"
    );
    // On a new connection the unlinked key no longer reaches alice: it is a stranger now.
    assert_ne!(user_id(&laptop), alice_id);
    let entries = alice.cmd("audit-entries").ok()["entries"].clone();
    assert!(
        entries.as_array().unwrap().iter().any(|e| {
            e["entry"]["action"] == "ssh_key_unlink"
                && e["entry"]["subject_key"] == laptop_fp.as_str()
        }),
        "{entries:#}"
    );
}

#[test]
fn an_agent_key_signs_and_asks_but_never_decides_or_manages_the_identity() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let agent = appliance.user("alice-agent");
    let started = alice.cmd("link start --agent --label ci");
    assert_eq!(started.ok()["agent"], true);
    let joined = agent.cmd(&format!("link finish --code {}", code(&started.json)));
    assert_eq!(joined.ok()["agent"], true);
    assert_eq!(joined.json["ssh_keys"][1]["kind"], "agent");

    // It signs with the identity's keys, as the identity.
    let key = alice.create_key("--scope git");
    let cosigned = alice.create_key("--scope deploy --tier cosign");
    assert_eq!(agent.run("sign", b"commit").ok()["key_id"], key.as_str());

    // What it asks for, no key of the identity approves over SSH: a person elsewhere decides.
    let pending = agent.run(&format!("sign --type deploy --key-id {cosigned}"), b"v2");
    let id = pending.ok()["pending_id"].as_str().unwrap().to_owned();
    alice
        .cmd(&format!("approve --id {id}"))
        .failed_with("self_approval");
    // And it decides nothing itself, nor changes who the identity is or trusts.
    for command in [
        format!("approve --id {id}"),
        format!("deny --id {id}"),
        "link start".to_owned(),
        format!("unlink --fingerprint {}", fingerprint_of(&alice)),
        "enroll passkey".to_owned(),
        "enroll totp".to_owned(),
        "approvers allow --from usr_aaaaaaaaaaaaaaaaaaaaaaaaaa".to_owned(),
    ] {
        let refused = agent.cmd(&command);
        let message = refused.failed_with("forbidden");
        assert!(message.contains("agent's"), "{command}: {message}");
    }
    assert_eq!(
        agent.cmd(&format!("get-envelope --id {id}")).ok()["status"],
        "pending"
    );
}
