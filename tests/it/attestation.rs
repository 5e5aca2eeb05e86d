//! Attestation: tokens that cannot prove where a key was made say so; `sshsign
//! verify-attestation` checks a device's certificate chain offline against the vendor's root.
//! No device here attests (the `yubihsm` crate's MockHsm has no attestation command), so the
//! chain is made by stock `openssl` in the shape a YubiHSM 2 gives: a root, an intermediate, the
//! device's attestation certificate, and the certificate over the key with Yubico's extensions.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::common::{SHIM, clean_command, provision, token_store, write_file};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA certificate `name`.pem (key `name`.key) signed by `issuer` (self-signed without one).
fn ca(dir: &Path, name: &str, issuer: Option<&str>, key: &[&str]) {
    std::fs::write(
        dir.join("ca.cnf"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign\n",
    )
    .unwrap();
    let (pem, keyfile, csr) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
    );
    let subject = format!("/CN=Test {name}");
    match issuer {
        None => {
            let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", &subject];
            args.extend_from_slice(key);
            args.extend_from_slice(&["-keyout", &keyfile, "-out", &pem]);
            openssl(dir, &args);
        }
        Some(issuer) => {
            let mut args = vec!["req", "-new", "-nodes", "-subj", &subject];
            args.extend_from_slice(key);
            args.extend_from_slice(&["-keyout", &keyfile, "-out", &csr]);
            openssl(dir, &args);
            let (ca_pem, ca_key) = (format!("{issuer}.pem"), format!("{issuer}.key"));
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &ca_pem,
                    "-CAkey",
                    &ca_key,
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    "ca.cnf",
                    "-out",
                    &pem,
                ],
            );
        }
    }
}

/// The certificate over `public_key` that the device `device` signs, with Yubico's extensions
/// (origin given as its BIT STRING content byte).
fn attested(dir: &Path, name: &str, public_key: &[u8; 32], origin: u8) -> Vec<u8> {
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(public_key);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        BASE64.encode(&spki)
    );
    std::fs::write(dir.join("key.pub.pem"), pem).unwrap();
    std::fs::write(
        dir.join("leaf.cnf"),
        format!(
            "1.3.6.1.4.1.41482.4.1=DER:04:03:02:02:01\n\
             1.3.6.1.4.1.41482.4.2=DER:02:04:00:bc:61:4e\n\
             1.3.6.1.4.1.41482.4.3=DER:03:02:00:{origin:02x}\n\
             1.3.6.1.4.1.41482.4.6=DER:02:02:12:34\n\
             1.3.6.1.4.1.41482.4.9=DER:0c:05:68:65:6c:6c:6f\n"
        ),
    )
    .unwrap();
    let out = format!("{name}.pem");
    openssl(
        dir,
        &[
            "x509",
            "-new",
            "-force_pubkey",
            "key.pub.pem",
            "-subj",
            "/CN=YubiHSM Attestation",
            "-CA",
            "device.pem",
            "-CAkey",
            "device.key",
            "-days",
            "1",
            "-extfile",
            "leaf.cnf",
            "-out",
            &out,
        ],
    );
    der(dir, name)
}

fn der(dir: &Path, name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(dir.join(format!("{name}.pem"))).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    BASE64.decode(body).unwrap()
}

fn file(dir: &Path, name: &str, public_key: &[u8; 32], chain: &[Vec<u8>]) -> PathBuf {
    let document = json!({
        "format": "sshsign-attestation/1",
        "key_id": "1234",
        "public_key": sshsign::hex::encode(public_key),
        "certificates": chain.iter().map(|c| BASE64.encode(c)).collect::<Vec<_>>(),
    });
    write_file(dir, name, document.to_string())
}

fn verify(dir: &Path, root: &str, extra: &[&str], file: &Path) -> (bool, Value, String) {
    let out = clean_command(SHIM)
        .args(["verify-attestation", "--root"])
        .arg(dir.join(format!("{root}.pem")))
        .args(extra)
        .arg(file)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_device_attestation_verifies_offline_against_the_vendor_root_only() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // The key: the appliance's decision key, made in a SoftHSM token.
    let store = token_store(dir);
    assert!(
        provision(&store, &["generate-appliance-keys"])
            .status
            .success()
    );
    let shown: Value = serde_json::from_slice(&provision(&store, &["show"]).stdout).unwrap();
    let line = shown["appliance_keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let public_key = sshsign::pubkey::parse_ed25519(&line).unwrap();

    ca(dir, "root", None, &["-newkey", "rsa:2048"]);
    ca(
        dir,
        "intermediate",
        Some("root"),
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    ca(
        dir,
        "device",
        Some("intermediate"),
        &["-newkey", "rsa:2048"],
    );
    ca(dir, "other", None, &["-newkey", "rsa:2048"]);
    let (device, intermediate) = (der(dir, "device"), der(dir, "intermediate"));
    let leaf = attested(dir, "leaf", &public_key, 0x01);
    let good = file(
        dir,
        "good.json",
        &public_key,
        &[leaf.clone(), device.clone(), intermediate.clone()],
    );

    let (ok, report, why) = verify(dir, "root", &["--public-key", &line], &good);
    assert!(ok, "{why}");
    assert_eq!(report["verified"], true);
    assert_eq!(report["chain"], 3);
    assert_eq!(report["serial"], 12_345_678);
    assert_eq!(report["firmware"], "2.2.1");
    assert_eq!(report["origin"], json!(["generated"]));
    assert_eq!(report["object_id"], 0x1234);
    assert_eq!(report["label"], "hello");

    // Another vendor's root: refused.
    let (ok, _, why) = verify(dir, "other", &[], &good);
    assert!(!ok && why.contains("no root given signed"), "{why}");
    // The chain cut short of the root's signature: refused.
    let short = file(
        dir,
        "short.json",
        &public_key,
        &[leaf.clone(), device.clone()],
    );
    let (ok, _, why) = verify(dir, "root", &[], &short);
    assert!(!ok && why.contains("no root given signed"), "{why}");
    // Over another key than the one named.
    let other_key = [7u8; 32];
    let wrong = file(
        dir,
        "wrong.json",
        &other_key,
        &[leaf.clone(), device.clone(), intermediate.clone()],
    );
    let (ok, _, why) = verify(dir, "root", &[], &wrong);
    assert!(!ok && why.contains("another key"), "{why}");
    let (ok, _, why) = verify(dir, "root", &["--public-key", &line], &wrong);
    assert!(!ok && why.contains("another key"), "{why}");
    // A key the device says was imported is not proof of anything.
    let imported = attested(dir, "imported", &public_key, 0x02);
    let imported = file(
        dir,
        "imported.json",
        &public_key,
        &[imported, device.clone(), intermediate.clone()],
    );
    let (ok, _, why) = verify(dir, "root", &[], &imported);
    assert!(!ok && why.contains("generated"), "{why}");
    // A certificate altered after signing.
    let mut altered = leaf.clone();
    let at = altered.len() - 10;
    altered[at] ^= 0x01;
    let altered = file(
        dir,
        "altered.json",
        &public_key,
        &[altered, device, intermediate],
    );
    let (ok, _, why) = verify(dir, "root", &[], &altered);
    assert!(!ok && why.contains("does not verify"), "{why}");
}

#[test]
fn tokens_that_cannot_attest_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = token_store(dir.path());
    assert!(
        provision(&store, &["generate-appliance-keys"])
            .status
            .success()
    );
    let listed: Value = serde_json::from_slice(&provision(&store, &["keys"]).stdout).unwrap();
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{listed}");
    for key in keys {
        assert_eq!(key["attestation"]["available"], false, "{key}");
        assert!(
            key["attestation"]["reason"]
                .as_str()
                .unwrap()
                .contains("cannot attest"),
            "{key}"
        );
    }
    let id = keys[0]["object_id"].as_str().unwrap();
    let to = dir.path().join("attestation.json");
    let out = provision(
        &store,
        &["attest", "--key-id", id, "--to", to.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot attest"));
    assert!(!to.exists());
    let out = provision(&store, &["attest", "--key-id", "00ff"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key with object id 00ff"));
}

#[test]
fn a_user_asks_over_ssh_and_hears_why_there_is_no_attestation() {
    let appliance = crate::common::Appliance::start();
    let alice = appliance.user("alice");
    let key = alice.create_key("--scope git");
    let listed = alice.cmd("keys");
    let support = &listed.ok()["attestation"];
    assert_eq!(support["available"], false, "{support}");
    assert!(
        support["how"].as_str().unwrap().contains("cannot attest"),
        "{support}"
    );
    let refused = alice.cmd(&format!("attest --key-id {key}"));
    assert!(
        refused
            .failed_with("attestation_unavailable")
            .contains("cannot attest")
    );
    // Someone else's key, or none, is unknown.
    let bob = appliance.user("bob");
    bob.cmd(&format!("attest --key-id {key}"))
        .failed_with("unknown_key");
    alice
        .cmd("attest --key-id ak_nothing")
        .failed_with("unknown_key");
}
