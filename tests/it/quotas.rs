//! Quotas per identity, the token's key budget, and the cap on identities: over a limit, a
//! stable code with the limit in words, and nothing half-made.

use crate::common::Appliance;

/// The test token holds the appliance's two Ed25519 keys (decision, checkpoint) and its seal
/// key; with two objects per key pair, room for all three twice over and a login key, 17
/// objects leave (17 − (2·(2·2 + 1) + 1)) / 2 = 3 signing keys.
const TOKEN_OBJECTS: &str = "17";
const KEY_LIMIT: u64 = 3;

#[test]
fn quotas_refuse_with_the_limit_and_leave_nothing_half_made() {
    let appliance = Appliance::start_with(&[
        ("SSHSIGN_QUOTAS", "keys=2, signatures=5/min, users=3"),
        ("SSHSIGN_TOKEN_OBJECTS", TOKEN_OBJECTS),
    ]);
    let (alice, bob) = (appliance.user("alice"), appliance.user("bob"));
    let health = || appliance.http_get("/healthz").1["signing_keys"].clone();
    assert_eq!(health()["limit"], KEY_LIMIT);

    // Two keys per user; the third is refused and leaves no key behind.
    let first = alice.create_key("--scope git");
    let kept = alice.create_key("--scope git");
    let message = alice
        .cmd("create-key --scope git")
        .failed_with("quota_exceeded")
        .to_owned();
    assert!(message.contains("at most 2 keys per user"), "{message}");
    assert_eq!(alice.cmd("keys").ok()["keys"].as_array().unwrap().len(), 2);

    // The token's budget: bob's first key fills it; his second is refused with the reason.
    bob.create_key("--scope git");
    assert_eq!(health()["live"], KEY_LIMIT);
    let full = bob
        .cmd("create-key --scope git")
        .failed_with("quota_exceeded")
        .to_owned();
    assert!(full.contains("holds all 3 signing keys"), "{full}");
    assert_eq!(bob.cmd("keys").ok()["keys"].as_array().unwrap().len(), 1);
    // A revoked key gives its room back.
    alice.cmd(&format!("revoke --key-id {first}")).ok();
    assert_eq!(health()["live"], KEY_LIMIT - 1);
    let room = bob.create_key("--scope git");

    // Signatures: a burst of five a minute, then refused with when to retry.
    for i in 0..5 {
        bob.run(
            &format!("sign --key-id {room}"),
            format!("payload {i}").as_bytes(),
        )
        .ok();
    }
    let refused = bob.run(&format!("sign --key-id {room}"), b"one too many");
    let message = refused.failed_with("quota_exceeded");
    assert!(
        message.contains("signatures is 5 a minute per user; retry in"),
        "{message}"
    );
    // Another identity's quota is its own.
    alice
        .run(&format!("sign --key-id {kept}"), b"alice signs")
        .ok();

    // Identities: three in all (alice, bob, carol); a fourth key is not let in, the others are.
    appliance.user("carol").cmd("whoami").ok();
    let dave = appliance.user("dave").cmd("whoami");
    assert_ne!(dave.status, 0, "{dave:?}");
    assert!(dave.stderr.contains("Permission denied"), "{dave:?}");
    assert!(appliance.log().contains("new identity refused"));
    alice.cmd("whoami").ok();
}
