//! Known-answer vectors through our code: OpenSSH's SSHSIG test data (also through the running
//! appliance's `verify`), and every Wycheproof Ed25519 case.

use serde_json::Value;
use sshsign::sshsig::{SshSig, verify_ed25519};

use crate::common::Appliance;

const OPENSSH_SIG: &str = include_str!("../vectors/sshsig/ed25519.sig");
const OPENSSH_DATA: &[u8] = include_bytes!("../vectors/sshsig/signed-data");
const OPENSSH_PUB: &str = include_str!("../vectors/sshsig/ed25519.pub");
const OPENSSH_NAMESPACE: &str = include_str!("../vectors/sshsig/namespace");
const WYCHEPROOF: &str = include_str!("../vectors/wycheproof/ed25519_test.json");

#[test]
fn openssh_sshsig_known_answer() {
    let signature = SshSig::from_armored(OPENSSH_SIG).unwrap();
    let namespace = OPENSSH_NAMESPACE.trim();
    signature.verify(namespace, OPENSSH_DATA).unwrap();
    assert_eq!(
        signature.public_key(),
        &sshsign::pubkey::parse_ed25519(OPENSSH_PUB).unwrap()
    );
    assert_eq!(signature.to_armored(), OPENSSH_SIG);

    // The appliance's verify command accepts it, and says no key of its own made it.
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let reply = alice.run(
        &format!("verify --type {namespace} --signature '{OPENSSH_SIG}'"),
        OPENSSH_DATA,
    );
    assert_eq!(reply.ok()["valid"], true);
    assert_eq!(reply.json["key_id"], Value::Null);
    let mut flipped = OPENSSH_DATA.to_vec();
    flipped[0] ^= 1;
    alice
        .run(
            &format!("verify --type {namespace} --signature '{OPENSSH_SIG}'"),
            &flipped,
        )
        .failed_with("invalid_signature");
}

fn hex(text: &str) -> Vec<u8> {
    sshsign::hex::decode(text).unwrap()
}

#[test]
fn wycheproof_ed25519_verification() {
    let vectors: Value = serde_json::from_str(WYCHEPROOF).unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for group in vectors["testGroups"].as_array().unwrap() {
        let public = hex(group["publicKey"]["pk"].as_str().unwrap());
        let public: [u8; 32] = public.try_into().unwrap();
        for case in group["tests"].as_array().unwrap() {
            let expected = case["result"].as_str().unwrap() == "valid";
            let verdict = verify_ed25519(
                &public,
                &hex(case["msg"].as_str().unwrap()),
                &hex(case["sig"].as_str().unwrap()),
            )
            .is_ok();
            if verdict != expected {
                wrong.push(format!(
                    "tcId {} ({}): expected {expected}",
                    case["tcId"], case["comment"]
                ));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, vectors["numberOfTests"].as_u64().unwrap());
    assert!(wrong.is_empty(), "{wrong:#?}");
}
