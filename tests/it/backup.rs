//! Backup and restore between tokens: `provision wrap-key`, `provision backup` and `provision
//! restore` through the `sshsign-server` binary, on kryoptic (the one token here that wraps
//! Ed25519 keys: SoftHSMv2 2.6.1 cannot, see its profile), and the refusals: a device or a
//! choice that keeps keys in, a tampered or foreign file, a token without the wrap key.

use std::path::Path;

use serde_json::{Value, json};

use sshsign::softhsm::SoftHsmStore;

use crate::approvals::{api_key, decided_over_ssh, get};
use crate::common::{
    Appliance, assert_git_signature, kryoptic_store, offline_check, provision_with, provisioned,
    token_keys, token_store, write_file,
};

const KRYOPTIC_WRAPPED: [(&str, &str); 2] = [
    ("SSHSIGN_HSM_PROFILE", "kryoptic"),
    ("SSHSIGN_KEY_EXPORT", "wrapped-untrusted"),
];

/// Runs `provision ARGS` and returns what it printed on stderr, asserting that it failed.
#[track_caller]
fn refused(store: &SoftHsmStore, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = provision_with(store, env, args);
    assert!(
        !out.status.success(),
        "provision {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Initialises another token, labelled `label`, in `store`.
fn second_token(store: &SoftHsmStore, label: &str) {
    let so_pin = store.so_pin_file();
    let pin = store.pin_file();
    provisioned(
        store,
        &[],
        &[
            "init-token",
            "--label",
            label,
            "--so-pin-file",
            so_pin.to_str().unwrap(),
            "--pin-file",
            pin.to_str().unwrap(),
        ],
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_backup_restored_into_a_fresh_token_signs_and_verifies_as_before() {
    let kept = tempfile::tempdir().unwrap();
    let wrap_file = kept.path().join("wrap.key");
    let backup_file = kept.path().join("backup.json");
    let dir = tempfile::tempdir().unwrap();
    let store = kryoptic_store(dir.path());
    let made = provisioned(
        &store,
        &KRYOPTIC_WRAPPED,
        &["wrap-key", "--new", path(&wrap_file)],
    );
    let wrap_key = made["tokens"][0]["wrap_key"].as_str().unwrap().to_owned();
    assert_eq!(made["trusted"], false, "{made}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&wrap_file.metadata().unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let mut appliance = Appliance::start_in(dir, store, &KRYOPTIC_WRAPPED, &[]);
    let alice = appliance.user("alice");
    let key = alice.cmd("create-key --scope git").ok().clone();
    let key_id = key["key_id"].as_str().unwrap().to_owned();
    let public_key = key["public_key"].as_str().unwrap().to_owned();
    // The keys may leave, but only wrapped: sensitive, extractable.
    for listed in token_keys(&appliance.store, &KRYOPTIC_WRAPPED) {
        assert_eq!(listed["attributes"]["sensitive"], true, "{listed}");
        assert_eq!(listed["attributes"]["extractable"], true, "{listed}");
    }
    let api = api_key(&alice, "approval:create,approval:read");
    let (id, decided) = decided_over_ssh(&appliance, &alice, &api, "deploy v2");
    let (_, appliance_keys) = appliance.http_get("/api/v1/appliance");

    let written = provisioned(
        &appliance.store,
        &KRYOPTIC_WRAPPED,
        &["backup", "--to", path(&backup_file)],
    );
    // The decision and checkpoint keys, alice's key, and the seal key.
    assert_eq!(written["keys"], 4, "{written}");
    assert_eq!(written["wrap_key"], wrap_key.as_str());
    let file: Value = serde_json::from_slice(&std::fs::read(&backup_file).unwrap()).unwrap();
    assert_eq!(file["format"], "sshsign-backup/1");
    assert_eq!(file["mechanism"], "CKM_AES_KEY_WRAP");
    appliance.stop();

    // A fresh token: without the group's wrap key, nothing can be restored.
    second_token(&appliance.store, "second");
    let second = [
        KRYOPTIC_WRAPPED[0],
        KRYOPTIC_WRAPPED[1],
        ("SSHSIGN_PKCS11_TOKEN", "second"),
    ];
    let why = refused(
        &appliance.store,
        &second,
        &["restore", "--from", path(&backup_file)],
    );
    assert!(why.contains("wrap-key"), "{why}");
    assert!(token_keys(&appliance.store, &second).is_empty());
    let joined = provisioned(
        &appliance.store,
        &second,
        &["wrap-key", "--from", path(&wrap_file)],
    );
    assert_eq!(joined["tokens"][0]["wrap_key"], wrap_key.as_str());
    let restored = provisioned(
        &appliance.store,
        &second,
        &[
            "restore",
            "--from",
            path(&backup_file),
            "--expect-audit-key",
            file["audit_key"].as_str().unwrap(),
        ],
    );
    assert_eq!(restored["restored"]["restored"], 4, "{restored}");
    assert_eq!(restored["restored"]["verified"], 3, "{restored}");
    // Run again (after an interruption, say), it finds everything there.
    let again = provisioned(
        &appliance.store,
        &second,
        &["restore", "--from", path(&backup_file)],
    );
    assert_eq!(again["restored"]["restored"], 0, "{again}");
    assert_eq!(again["restored"]["present"], 4, "{again}");
    let self_test = provisioned(&appliance.store, &second, &["self-test"]);
    assert_eq!(self_test["ok"], true);

    // The appliance on the new token: same keys, records still open, old proofs still hold.
    appliance.restart_with(&[("SSHSIGN_PKCS11_TOKEN", "second")]);
    let (_, health) = appliance.http_get("/healthz");
    assert_eq!(health["token"]["label"], "second", "{health}");
    let (_, after) = appliance.http_get("/api/v1/appliance");
    assert_eq!(after["keys"], appliance_keys["keys"]);
    let alice = alice.at(&appliance);
    let payload = b"tree 4567\nauthor alice\n\nsigned after a restore\n";
    let signed = alice.run(&format!("sign --type git --key-id {key_id}"), payload);
    let signature = signed.ok()["signature"].as_str().unwrap().to_owned();
    assert_git_signature(appliance.dir.path(), &public_key, &signature, payload);
    let now = get(&appliance, &api, &format!("/api/v1/approvals/{id}"));
    assert_eq!(now.json["status"], "approved", "{:?}", now.json);
    let jwks = appliance.save_jwks(kept.path());
    let decision = write_file(kept.path(), "decision.json", decided.body.clone());
    let out = offline_check("verify-approval", &jwks, &["--request-id", &id], &decision);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_tampered_or_foreign_backup_restores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = kryoptic_store(dir.path());
    let wrap_file = dir.path().join("wrap.key");
    let backup_file = dir.path().join("backup.json");
    provisioned(&store, &KRYOPTIC_WRAPPED, &["generate-appliance-keys"]);
    // A rotated checkpoint key: the manifest is signed by the active one.
    let tlog = dir.path().join("tlog");
    let rotating = [
        KRYOPTIC_WRAPPED[0],
        KRYOPTIC_WRAPPED[1],
        ("SSHSIGN_AUDIT_PATH", path(&tlog)),
    ];
    provisioned(&store, &rotating, &["rotate", "--role", "checkpoint"]);
    // The first retired: the backup carries its public half alone.
    provisioned(
        &store,
        &rotating,
        &["retire", "--role", "checkpoint", "--generation", "1"],
    );
    provisioned(
        &store,
        &KRYOPTIC_WRAPPED,
        &["wrap-key", "--new", path(&wrap_file)],
    );
    provisioned(
        &store,
        &KRYOPTIC_WRAPPED,
        &["backup", "--to", path(&backup_file)],
    );
    // A backup never overwrites a file.
    let why = refused(
        &store,
        &KRYOPTIC_WRAPPED,
        &["backup", "--to", path(&backup_file)],
    );
    assert!(why.contains("exists"), "{why}");

    second_token(&store, "second");
    let second = [
        KRYOPTIC_WRAPPED[0],
        KRYOPTIC_WRAPPED[1],
        ("SSHSIGN_PKCS11_TOKEN", "second"),
    ];
    provisioned(&store, &second, &["wrap-key", "--from", path(&wrap_file)]);
    let original: Value = serde_json::from_slice(&std::fs::read(&backup_file).unwrap()).unwrap();

    // A label changed: the checkpoint key's signature no longer holds.
    let mut tampered = original.clone();
    tampered["keys"][0]["label"] = json!("sshsign-renamed");
    let tampered_file = write_file(dir.path(), "tampered.json", tampered.to_string());
    let why = refused(
        &store,
        &second,
        &["restore", "--from", path(&tampered_file)],
    );
    assert!(why.contains("signature does not verify"), "{why}");
    // Another appliance's backup, by its audit key.
    let why = refused(
        &store,
        &second,
        &[
            "restore",
            "--from",
            path(&backup_file),
            "--expect-audit-key",
            "sshsign-audit-00000000+00000000+AQ==",
        ],
    );
    assert!(why.contains("--expect-audit-key"), "{why}");
    // Not a backup at all.
    let junk = write_file(dir.path(), "junk.json", "{\"format\": 1}");
    let why = refused(&store, &second, &["restore", "--from", path(&junk)]);
    assert!(why.contains("not valid"), "{why}");
    assert!(token_keys(&store, &second).is_empty());

    // A token of another group (another wrap key) cannot open it.
    second_token(&store, "third");
    let third = [
        KRYOPTIC_WRAPPED[0],
        KRYOPTIC_WRAPPED[1],
        ("SSHSIGN_PKCS11_TOKEN", "third"),
    ];
    let other = dir.path().join("other.key");
    provisioned(&store, &third, &["wrap-key", "--new", path(&other)]);
    let why = refused(&store, &third, &["restore", "--from", path(&backup_file)]);
    assert!(why.contains("no wrap key"), "{why}");
    assert!(token_keys(&store, &third).is_empty());

    // Restored keys have been out of a token once: an appliance that promises `never` refuses.
    let why = refused(
        &store,
        &[KRYOPTIC_WRAPPED[0], ("SSHSIGN_PKCS11_TOKEN", "second")],
        &["restore", "--from", path(&backup_file)],
    );
    assert!(why.contains("SSHSIGN_KEY_EXPORT=never"), "{why}");
    assert!(token_keys(&store, &second).is_empty());

    // The untouched file restores: the decision key, both checkpoint keys (the retired one as
    // its public half), the seal key; the two that sign are checked.
    let restored = provisioned(&store, &second, &["restore", "--from", path(&backup_file)]);
    assert_eq!(restored["restored"]["restored"], 4, "{restored}");
    assert_eq!(restored["restored"]["verified"], 2, "{restored}");
    let again = provisioned(&store, &second, &["restore", "--from", path(&backup_file)]);
    assert_eq!(again["restored"]["present"], 4, "{again}");
    // The retired key is shown as such, not as a key that signs.
    assert_eq!(token_keys(&store, &second).len(), 2);
    let retired = provisioned(&store, &second, &["show"])["appliance_keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"] == "retired")
        .count();
    assert_eq!(retired, 1);
    let shown = provisioned(&store, &second, &["show"]);
    assert!(
        shown["audit_verifier_key"] == original["audit_key"],
        "{shown} {original}"
    );
}

#[test]
fn keys_that_may_not_leave_are_never_backed_up() {
    // SoftHSMv2 2.6.1 cannot wrap Ed25519 keys: the choice is refused before anything is made.
    let dir = tempfile::tempdir().unwrap();
    let softhsm = token_store(dir.path());
    let why = refused(
        &softhsm,
        &[
            ("SSHSIGN_HSM_PROFILE", "softhsm2"),
            ("SSHSIGN_KEY_EXPORT", "wrapped"),
        ],
        &["generate-appliance-keys"],
    );
    assert!(
        why.contains("SSHSIGN_KEY_EXPORT") && why.contains("softhsm2"),
        "{why}"
    );
    // kryoptic cannot mark a wrap key trusted: `wrapped` is refused, naming the alternative.
    let dir = tempfile::tempdir().unwrap();
    let store = kryoptic_store(dir.path());
    let kryoptic = [("SSHSIGN_HSM_PROFILE", "kryoptic")];
    let why = refused(
        &store,
        &[kryoptic[0], ("SSHSIGN_KEY_EXPORT", "wrapped")],
        &["generate-appliance-keys"],
    );
    assert!(why.contains("wrapped-untrusted"), "{why}");
    let why = refused(
        &store,
        &[kryoptic[0], ("SSHSIGN_KEY_EXPORT", "sometimes")],
        &["generate-appliance-keys"],
    );
    assert!(why.contains("never, wrapped or wrapped-untrusted"), "{why}");

    // Keys made with the default (never) stay in, even with a wrap key on the token.
    provisioned(&store, &kryoptic, &["generate-appliance-keys"]);
    let wrap_file = dir.path().join("wrap.key");
    provisioned(&store, &kryoptic, &["wrap-key", "--new", path(&wrap_file)]);
    let backup_file = dir.path().join("backup.json");
    let why = refused(&store, &kryoptic, &["backup", "--to", path(&backup_file)]);
    assert!(why.contains("cannot leave the token"), "{why}");
    assert!(!backup_file.exists());
    for listed in token_keys(&store, &kryoptic) {
        assert_eq!(listed["attributes"]["extractable"], false, "{listed}");
    }
    // And an appliance that says keys may leave finds keys that cannot: its self-test says so
    // only if they are weaker than promised, which never-extractable keys are not.
    let self_test = provisioned(&store, &KRYOPTIC_WRAPPED, &["self-test"]);
    assert_eq!(self_test["ok"], true);
}

#[test]
fn a_yubihsm_backup_is_wrapped_by_the_device_and_checked_on_restore() {
    use std::os::unix::fs::PermissionsExt as _;

    use crate::yubihsm_mock::MockConnector;

    let dir = tempfile::tempdir().unwrap();
    // The native backend ignores the software token; its settings only fill the gaps.
    let base = token_store(dir.path());
    let auth = dir.path().join("yubihsm-auth");
    std::fs::write(&auth, "0001password").unwrap();
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (first, second) = (MockConnector::start(), MockConnector::start());
    let (first_url, second_url) = (first.url(), second.url());
    let device = |url: &str| {
        vec![
            ("SSHSIGN_HSM_PROFILE", "yubihsm2-native".to_owned()),
            ("SSHSIGN_YUBIHSM_CONNECTOR", url.to_owned()),
            ("SSHSIGN_PKCS11_PIN_FILE", auth.display().to_string()),
            ("SSHSIGN_KEY_EXPORT", "wrapped".to_owned()),
        ]
    };
    let (on_first, on_second) = (device(&first_url), device(&second_url));
    let run = |settings: &[(&'static str, String)], args: &[&str]| {
        let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        provisioned(&base, &pairs, args)
    };
    let wrap_file = dir.path().join("wrap.key");
    let backup_file = dir.path().join("backup.json");
    let made = run(&on_first, &["wrap-key", "--new", path(&wrap_file)]);
    assert_eq!(made["trusted"], true, "{made}");
    run(&on_first, &["generate-appliance-keys"]);
    for listed in run(&on_first, &["keys"])["keys"].as_array().unwrap() {
        // exportable-under-wrap, and nothing in the clear.
        assert_eq!(listed["attributes"]["extractable"], true, "{listed}");
        assert_eq!(listed["attributes"]["wrap_with_trusted"], true, "{listed}");
    }
    let written = run(&on_first, &["backup", "--to", path(&backup_file)]);
    // The decision and checkpoint keys, and the HMAC seal key.
    assert_eq!(written["keys"], 3, "{written}");

    run(&on_second, &["wrap-key", "--from", path(&wrap_file)]);
    // The crate's MockHsm wraps an Ed25519 key's public half where the device wraps its private
    // half (yubihsm 0.42.1 src/mockhsm/object/payload.rs, Payload::to_bytes), so what comes
    // back is another key: the restore's own check signs with each key and refuses it.
    let pairs: Vec<(&str, &str)> = on_second.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let why = refused(&base, &pairs, &["restore", "--from", path(&backup_file)]);
    assert!(why.contains("does not sign under its public key"), "{why}");
}

#[test]
fn on_softhsm_keys_made_to_leave_under_a_trusted_wrap_key_leave_under_no_other() {
    use sshsign::hsm::pkcs11::{self, Pkcs11Config, Pkcs11Hsm};
    use sshsign::hsm::profile::{EcParamsForm, WrapMechanism};
    use sshsign::hsm::{DeviceLimits, Hsm as _, KeyExport, ObjectId, WrappedKey, WrappedKind};
    use sshsign::softhsm::SoftToken;
    use zeroize::Zeroizing;

    let (first, store) = crate::common::soft_token(
        SoftToken::SoftHsm,
        1,
        EcParamsForm::default(),
        DeviceLimits::default(),
    );
    // The wrap keys are put in with the token's login free: the security officer's for the
    // trusted one.
    first.close().unwrap();
    drop(first);
    let pin = || sshsign::secret::read_secret_file(&store.pin_file()).unwrap();
    let config = |export| Pkcs11Config {
        export,
        wrap_mechanism: Some(WrapMechanism::AesKeyWrapPad),
        ..Pkcs11Config::new(store.module.clone(), store.label.clone(), pin(), 1)
    };
    let so_pin = sshsign::secret::read_secret_file(&store.so_pin_file()).unwrap();
    let trusted = Zeroizing::new([0x11u8; 32]);
    let (trusted_id, existed) =
        pkcs11::import_wrap_key(&config(KeyExport::Wrapped), Some(&so_pin), &trusted).unwrap();
    assert!(!existed);
    let (_, existed) =
        pkcs11::import_wrap_key(&config(KeyExport::Wrapped), Some(&so_pin), &trusted).unwrap();
    assert!(existed, "a wrap key is put in once");
    let refused = pkcs11::import_wrap_key(&config(KeyExport::Wrapped), None, &trusted);
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("security officer")
    );
    // One the user login makes: not trusted.
    let untrusted = Zeroizing::new([0x22u8; 32]);
    let (untrusted_id, _) =
        pkcs11::import_wrap_key(&config(KeyExport::WrappedUntrusted), None, &untrusted).unwrap();

    let hsm = Pkcs11Hsm::open(config(KeyExport::Wrapped)).unwrap();
    let held = hsm.wrap_keys().unwrap();
    assert!(
        held.contains(&trusted_id) && held.contains(&untrusted_id),
        "{held:?}"
    );
    let seal = hsm.generate_seal_key("sshsign-seal").unwrap();
    // The seal key leaves under the trusted wrap key (RFC 5649: 32 bytes wrap to 40), never
    // under the other.
    let wrapped = hsm.wrap_key(&trusted_id, WrappedKind::Seal, &seal).unwrap();
    assert_eq!(wrapped.len(), 40);
    assert!(
        hsm.wrap_key(&untrusted_id, WrappedKind::Seal, &seal)
            .is_err()
    );
    // Brought back (under another id here), it opens what the original sealed.
    let copy = ObjectId::new(vec![0x5e; 16]);
    hsm.unwrap_key(
        &trusted_id,
        &WrappedKey {
            kind: WrappedKind::Seal,
            object_id: copy.clone(),
            label: "sshsign-seal-copy".to_owned(),
            public_key: None,
            wrapped,
        },
        KeyExport::Wrapped,
    )
    .unwrap();
    let (data_key, stored) = hsm.new_data_key(&seal).unwrap();
    assert_eq!(hsm.open_data_key(&copy, &stored).unwrap(), data_key);
    // An Ed25519 key is made to leave only under a trusted key, but SoftHSMv2 2.6.1 cannot wrap
    // Ed25519 at all: the refusal says so.
    let key = hsm.generate_ed25519("wrapped-only").unwrap();
    let attributes = hsm.attributes(&key.object_id).unwrap();
    assert!(
        attributes.extractable && attributes.wrap_with_trusted,
        "{attributes:?}"
    );
    assert!(attributes.meets(KeyExport::Wrapped));
    assert!(!attributes.meets(KeyExport::Never));
    let refused = hsm
        .wrap_key(&trusted_id, WrappedKind::Ed25519, &key.object_id)
        .unwrap_err();
    assert!(
        refused.to_string().contains("cannot leave the token"),
        "{refused}"
    );
}
