//! Consent to be asked: nobody is named an approver or granted an authorization by a user they
//! have not accepted; nothing of a refused request reaches their lists.

use serde_json::json;

use crate::approvals::{api_key, post, user_id};
use crate::common::Appliance;

#[test]
fn approvers_and_grantees_are_asked_only_by_those_they_accept() {
    let appliance = Appliance::start();
    let (alice, bob) = (appliance.user("alice"), appliance.user("bob"));
    let (alice_id, bob_id) = (user_id(&alice), user_id(&bob));
    let key = api_key(&alice, "approval:create,approval:read");
    let ask = || {
        post(
            &appliance,
            &key,
            &json!({"action": "Wire 10k to Mallory", "approvers": [bob_id], "methods": ["ssh"]}),
        )
    };

    // Refused, with the command Bob would run, and nothing reaches Bob.
    let refused = ask();
    assert_eq!((refused.status, refused.code()), (403, "not_accepted"));
    let message = refused.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("approvers allow --from {alice_id}")),
        "{message}"
    );
    let alice_key = alice.create_key("--scope release");
    alice
        .cmd(&format!(
            "authorize --key-id {alice_key} --grantee {bob_id} --scope release"
        ))
        .failed_with("not_accepted");
    let nothing = bob.cmd("pending");
    assert!(nothing.ok()["approvals"].as_array().unwrap().is_empty());
    assert!(bob.cmd("keys").ok()["keys"].as_array().unwrap().is_empty());
    // Her own requests and grants need nobody's acceptance.
    let own = post(
        &appliance,
        &key,
        &json!({"action": "mine", "approvers": [alice_id]}),
    );
    assert_eq!(own.status, 201, "{:?}", own.json);

    // Bob accepts Alice (by her SSH key's fingerprint); now both go through.
    let fingerprint = alice.cmd("whoami").ok()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let allowed = bob.cmd(&format!("approvers allow --from {fingerprint}"));
    assert_eq!(allowed.ok()["from"], alice_id.as_str());
    assert_eq!(
        bob.cmd("approvers list").ok()["accepted"][0]["from"],
        alice_id.as_str()
    );
    let accepted = ask();
    assert_eq!(accepted.status, 201, "{:?}", accepted.json);
    let id = accepted.json["id"].as_str().unwrap().to_owned();
    alice
        .cmd(&format!(
            "authorize --key-id {alice_key} --grantee {bob_id} --scope release"
        ))
        .ok();
    assert_eq!(bob.cmd("keys").ok()["keys"].as_array().unwrap().len(), 1);

    // Revoked: new requests are refused again; what Bob accepted before stays his to decide.
    bob.cmd(&format!("approvers revoke --from {alice_id}")).ok();
    assert_eq!(ask().code(), "not_accepted");
    let pending = bob.cmd("pending");
    assert_eq!(pending.ok()["approvals"][0]["id"], id.as_str());
    assert!(
        bob.cmd("approvers list").ok()["accepted"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Bad names are refused clearly; both changes are in Bob's audit entries.
    bob.cmd("approvers allow --from usr_nobody")
        .failed_with("unknown_user");
    bob.cmd(&format!("approvers allow --from {bob_id}"))
        .failed_with("invalid_argument");
    bob.cmd(&format!("approvers revoke --from {alice_id}"))
        .failed_with("invalid_argument");
    let entries = bob.cmd("audit-entries");
    let actions: Vec<&str> = entries.ok()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["entry"]["action"].as_str())
        .filter(|a| a.starts_with("consent_"))
        .collect();
    assert_eq!(actions, ["consent_allow", "consent_revoke"]);
}
