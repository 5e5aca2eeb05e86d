//! `sshsign-server provision ...` against a fresh token.

use std::os::unix::fs::PermissionsExt as _;

use serde_json::Value;

use crate::common::{SERVER, clean_command, provision, token_store};

fn json(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn slots_show_the_token_and_its_ed25519_support() {
    let dir = tempfile::tempdir().unwrap();
    let store = token_store(dir.path());
    let slots = json(&provision(&store, &["slots"]));
    let slots = slots["slots"].as_array().unwrap();
    let ours = slots
        .iter()
        .find(|s| s["label"] == store.label.as_str())
        .expect("the fixture's token is listed");
    assert_eq!(ours["token_initialized"], true);
    assert_eq!(ours["ed25519_keygen"], true);
    assert_eq!(ours["eddsa_sign"], true);
    // SoftHSM always offers one more, uninitialised token.
    assert!(slots.iter().any(|s| s["token_initialized"] == false));
}

#[test]
fn appliance_keys_are_generated_once_shown_and_self_tested() {
    let dir = tempfile::tempdir().unwrap();
    let store = token_store(dir.path());
    let pin = std::fs::read_to_string(store.pin_file()).unwrap();
    let so_pin = std::fs::read_to_string(store.so_pin_file()).unwrap();

    let first = json(&provision(&store, &["generate-appliance-keys"]));
    let keys = first["appliance_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k["created"] == true));
    let second = json(&provision(&store, &["generate-appliance-keys"]));
    assert!(
        second["appliance_keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["created"] == false)
    );

    let show = json(&provision(&store, &["show"]));
    let shown = show["appliance_keys"].as_array().unwrap();
    let roles: Vec<_> = shown.iter().map(|k| k["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["decision", "checkpoint"]);
    for (made, shown) in keys.iter().zip(shown) {
        assert_eq!(made["key"]["fingerprint"], shown["fingerprint"]);
        assert!(
            shown["public_key"]
                .as_str()
                .unwrap()
                .starts_with("ssh-ed25519 ")
        );
        assert!(
            shown["fingerprint"]
                .as_str()
                .unwrap()
                .starts_with("SHA256:")
        );
    }

    let test = provision(&store, &["self-test"]);
    let report = json(&test);
    assert_eq!(report["ok"], true);
    for key in report["self_test"].as_array().unwrap() {
        assert_eq!(key["signature_verified"], true);
        assert_eq!(key["attributes"]["extractable"], false);
        assert_eq!(key["attributes"]["sensitive"], true);
    }

    // PINs are never printed, whatever the command.
    for output in [provision(&store, &["show"]), test] {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!all.contains(pin.trim()) && !all.contains(so_pin.trim()));
    }
}

#[test]
fn init_token_guards_existing_tokens_and_pin_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = token_store(dir.path());
    let pins = [
        "--so-pin-file",
        store.so_pin_file().to_str().unwrap().to_owned().leak(),
        "--pin-file",
        store.pin_file().to_str().unwrap().to_owned().leak(),
    ];

    let again = provision(
        &store,
        &[&["init-token", "--label", &store.label], &pins[..]].concat(),
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let slots = json(&provision(&store, &["slots"]));
    let ours = slots["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["label"] == store.label.as_str())
        .unwrap()["slot"]
        .to_string();
    let reinit = provision(
        &store,
        &[
            &["init-token", "--label", "other", "--slot", &ours],
            &pins[..],
        ]
        .concat(),
    );
    assert!(!reinit.status.success());
    assert!(String::from_utf8_lossy(&reinit.stderr).contains("--reinitialize"));

    // A PIN file others can read is refused, and the message does not show the PIN.
    let open_pin = dir.path().join("open-pin");
    std::fs::write(&open_pin, "123456\n").unwrap();
    std::fs::set_permissions(&open_pin, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = provision(
        &store,
        &[
            "init-token",
            "--label",
            "new",
            "--so-pin-file",
            open_pin.to_str().unwrap(),
            "--pin-file",
            open_pin.to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("chmod 600") && !stderr.contains("123456"),
        "{stderr}"
    );

    // A fresh token on the free slot works, and generates keys.
    let fresh = provision(
        &store,
        &[&["init-token", "--label", "second"], &pins[..]].concat(),
    );
    json(&fresh);
    let keys = provision(&store, &["generate-appliance-keys", "--token", "second"]);
    assert_eq!(json(&keys)["appliance_keys"].as_array().unwrap().len(), 2);
}

#[test]
fn serve_refuses_to_start_without_appliance_keys_or_with_a_wrong_pin() {
    let dir = tempfile::tempdir().unwrap();
    let store = token_store(dir.path());
    let serve = |pin_file: &std::path::Path| {
        clean_command(SERVER)
            .arg("serve")
            .envs(store.env())
            .env("SSHSIGN_PKCS11_PIN_FILE", pin_file)
            .env("SSHSIGN_LISTEN_ADDR", "127.0.0.1:0")
            .env("SSHSIGN_HTTP_ADDR", "127.0.0.1:0")
            .env("SSHSIGN_DB_PATH", dir.path().join("db"))
            .env("SSHSIGN_HOST_KEY_PATH", dir.path().join("host_key"))
            .output()
            .unwrap()
    };
    let missing = serve(&store.pin_file());
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("generate-appliance-keys"));

    let wrong = dir.path().join("wrong-pin");
    std::fs::write(&wrong, "not-the-pin\n").unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let refused = serve(&wrong);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("login failed") && stderr.contains("PinIncorrect"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-pin"));
}

#[test]
fn profiles_are_listed_with_what_was_tested() {
    let output = clean_command(SERVER)
        .args(["provision", "profiles"])
        .output()
        .unwrap();
    let profiles = json(&output);
    let names: Vec<_> = profiles["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "softhsm2",
            "yubihsm2-pkcs11",
            "nitrokey-nethsm",
            "yubihsm2-native",
            "kryoptic"
        ]
    );
    assert!(profiles["profiles"][0]["installed_module"].is_string());
    // Each profile says which curve encoding it sends, which login makes keys, its limits, and
    // where in the vendor's source each of those comes from.
    let nethsm = &profiles["profiles"][2];
    assert_eq!(nethsm["ec_params"], "oid", "{nethsm}");
    assert_eq!(nethsm["key_login"], "so", "{nethsm}");
    assert_eq!(nethsm["verify"], false, "{nethsm}");
    assert!(
        nethsm["sources"]["ec_params"]
            .as_str()
            .unwrap()
            .contains("pkcs11/src/backend/key.rs"),
        "{nethsm}"
    );
    let native = &profiles["profiles"][3];
    assert_eq!(native["backend"], "yubihsm", "{native}");
    assert_eq!(native["message_limit"], 2047, "{native}");
    assert_eq!(native["connector"], "http://127.0.0.1:12345", "{native}");
}
