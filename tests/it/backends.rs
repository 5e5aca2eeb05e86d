//! One conformance suite for every token backend: each test below runs against SoftHSMv2 and
//! kryoptic through PKCS#11 (with both encodings of the Ed25519 curve, `CKA_EC_PARAMS` as the
//! PrintableString `edwards25519` and as the OID 1.3.101.112), and against the native YubiHSM 2
//! backend on the `yubihsm` crate's MockHsm, reached over HTTP as `yubihsm-connector` is.
//!
//! What a backend must do: generate a key whose private half is sensitive and was never
//! extractable; give its public key as 32 bytes that verify its signatures (checked with
//! ed25519-dalek); find keys by id and label, list and destroy them; give random bytes; make a
//! data key under its seal key and give the same one back; report a lost session once, without
//! signing twice, then reconnect; refuse a full token and an over-long message clearly, before
//! the device is asked; sign from many threads at once.

use std::sync::Arc;

use ed25519_dalek::{Signature, VerifyingKey};
use sshsign::hsm::profile::EcParamsForm;
use sshsign::hsm::yubihsm::{YubiHsm, YubiHsmConfig};
use sshsign::hsm::{DeviceLimits, Error, Hsm};
use sshsign::softhsm::SoftToken;

use crate::common::soft_token;
use crate::yubihsm_mock::MockConnector;

/// A backend opened for one test, and how to break its session.
struct UnderTest {
    hsm: Arc<dyn Hsm>,
    /// Objects one key pair takes on this backend.
    per_key: usize,
    /// Makes the backend's next call find its session gone.
    lose_session: Box<dyn Fn()>,
    /// Commands the device has been sent, where the test can see them.
    commands: Option<Box<dyn Fn() -> usize>>,
    _keep: Box<dyn std::any::Any>,
}

type Open = fn(DeviceLimits) -> UnderTest;

/// `limits` with the backend's own count of objects per key pair.
fn per_key(limits: DeviceLimits, per_key: usize) -> DeviceLimits {
    DeviceLimits {
        objects: limits.objects.map(|(capacity, _)| (capacity, per_key)),
        ..limits
    }
}

fn pkcs11(kind: SoftToken, ec_params: EcParamsForm, limits: DeviceLimits) -> UnderTest {
    let (hsm, store) = soft_token(kind, 3, ec_params, per_key(limits, 2));
    let hsm = Arc::new(hsm);
    let logout = Arc::clone(&hsm);
    UnderTest {
        hsm,
        per_key: 2,
        // C_Logout ends the login of every session, as a token restart does.
        lose_session: Box::new(move || logout.logout().unwrap()),
        commands: None,
        _keep: Box::new(store),
    }
}

fn softhsm_printable(limits: DeviceLimits) -> UnderTest {
    pkcs11(SoftToken::SoftHsm, EcParamsForm::Printable, limits)
}

fn softhsm_oid(limits: DeviceLimits) -> UnderTest {
    pkcs11(SoftToken::SoftHsm, EcParamsForm::Oid, limits)
}

fn kryoptic_printable(limits: DeviceLimits) -> UnderTest {
    pkcs11(SoftToken::Kryoptic, EcParamsForm::Printable, limits)
}

fn kryoptic_oid(limits: DeviceLimits) -> UnderTest {
    pkcs11(SoftToken::Kryoptic, EcParamsForm::Oid, limits)
}

fn yubihsm_mock(limits: DeviceLimits) -> UnderTest {
    let connector = Arc::new(MockConnector::start());
    let hsm = YubiHsm::open(YubiHsmConfig {
        connector: connector.url().parse().unwrap(),
        credentials: "0001password".into(),
        label: "YubiHSM".into(),
        sessions: 2,
        limits: per_key(limits, 1),
        export: sshsign::hsm::KeyExport::Never,
    })
    .unwrap();
    let (lose, count) = (Arc::clone(&connector), Arc::clone(&connector));
    UnderTest {
        hsm: Arc::new(hsm),
        per_key: 1,
        lose_session: Box::new(move || lose.drop_next_reply()),
        commands: Some(Box::new(move || count.commands())),
        _keep: Box::new(connector),
    }
}

fn verify(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(public_key)
        .and_then(|key| key.verify_strict(message, &Signature::from_bytes(signature)))
        .is_ok()
}

fn generated_keys_never_leave_the_token_and_sign_ed25519(open: Open) {
    let t = open(DeviceLimits::default());
    let hsm = t.hsm.as_ref();
    let key = hsm.generate_ed25519("ak_test").unwrap();
    assert_eq!(key.label, "ak_test");
    // The public key is the 32-byte Ed25519 point, a valid curve point.
    assert!(VerifyingKey::from_bytes(&key.public_key).is_ok());

    let attributes = hsm.attributes(&key.object_id).unwrap();
    assert!(attributes.is_non_exportable(), "{attributes:?}");
    assert!(attributes.sign, "{attributes:?}");

    let signature = hsm.sign(&key.object_id, b"message").unwrap();
    assert!(verify(&key.public_key, b"message", &signature));
    assert!(!verify(&key.public_key, b"other", &signature));
    // Pure Ed25519 is deterministic: the same message gives the same signature.
    assert_eq!(hsm.sign(&key.object_id, b"message").unwrap(), signature);

    let found = hsm.find(&key.object_id).unwrap().unwrap();
    assert_eq!(found, key);
    assert_eq!(hsm.find_by_label("ak_test").unwrap(), vec![found.clone()]);
    assert!(hsm.find_by_label("ak_other").unwrap().is_empty());
    let other = hsm.generate_ed25519("ak_other").unwrap();
    assert_ne!(other.object_id, key.object_id);
    assert_ne!(other.public_key, key.public_key);
    let mut listed = hsm.list().unwrap();
    listed.sort_by(|a, b| a.label.cmp(&b.label));
    assert_eq!(listed, vec![other.clone(), found]);

    hsm.destroy(&key.object_id).unwrap();
    assert_eq!(hsm.find(&key.object_id).unwrap(), None);
    assert_eq!(hsm.list().unwrap(), vec![other]);
    assert!(matches!(
        hsm.sign(&key.object_id, b"x"),
        Err(Error::KeyNotFound(_))
    ));
    assert!(matches!(
        hsm.attributes(&key.object_id),
        Err(Error::KeyNotFound(_))
    ));
    // Destroying what is gone is not an error: a retried revocation finishes.
    hsm.destroy(&key.object_id).unwrap();
}

fn random_bytes_come_from_the_token(open: Open) {
    let t = open(DeviceLimits::default());
    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    t.hsm.random(&mut a).unwrap();
    t.hsm.random(&mut b).unwrap();
    assert_ne!(a, b);
    assert_ne!(a, [0u8; 32]);
    // More than one device command's worth.
    let mut long = vec![0u8; 5000];
    t.hsm.random(&mut long).unwrap();
    assert!(long[4000..].iter().any(|&byte| byte != 0));
}

fn the_seal_key_gives_the_same_data_key_back(open: Open) {
    let t = open(DeviceLimits::default());
    let hsm = t.hsm.as_ref();
    let seal = hsm.generate_seal_key("sshsign-seal").unwrap();
    assert_eq!(
        hsm.find_seal_keys("sshsign-seal").unwrap(),
        vec![seal.clone()]
    );
    assert!(hsm.find_seal_keys("other").unwrap().is_empty());

    let (data_key, stored) = hsm.new_data_key(&seal).unwrap();
    assert_eq!(data_key.len(), sshsign::hsm::DATA_KEY_LEN);
    // What is stored does not hold the key.
    assert!(
        !stored
            .windows(data_key.len())
            .any(|w| w == data_key.as_slice())
    );
    assert_eq!(*hsm.open_data_key(&seal, &stored).unwrap(), *data_key);
    let (second, _) = hsm.new_data_key(&seal).unwrap();
    assert_ne!(*second, *data_key);

    // Another seal key does not give this data key.
    let other = hsm.generate_seal_key("other-seal").unwrap();
    if let Ok(key) = hsm.open_data_key(&other, &stored) {
        assert_ne!(*key, *data_key);
    }
    // A stored value cut short is refused.
    assert!(hsm.open_data_key(&seal, &stored[..8]).is_err());
}

fn a_lost_session_is_reported_once_without_a_second_signature(open: Open) {
    let t = open(DeviceLimits::default());
    let hsm = t.hsm.as_ref();
    let key = hsm.generate_ed25519("ak_loss").unwrap();
    hsm.sign(&key.object_id, b"before").unwrap();

    (t.lose_session)();
    let before = t.commands.as_ref().map(|count| count());
    match hsm.sign(&key.object_id, b"during") {
        Err(Error::SessionLost { reconnect, .. }) => {
            assert!(reconnect.contains("reconnected"), "{reconnect}");
        }
        other => panic!("expected a reported session loss, got {other:?}"),
    }
    if let (Some(before), Some(count)) = (before, &t.commands) {
        // The signing command went out once (the device may have signed; its reply was lost)
        // and was not sent again; what followed was the reconnect (two commands: create and
        // authenticate a session).
        assert_eq!(
            count() - before,
            3,
            "one signing command, then a new session"
        );
    }
    // The caller decides to retry; the backend has reconnected.
    let signature = hsm.sign(&key.object_id, b"after").unwrap();
    assert!(verify(&key.public_key, b"after", &signature));

    // Reads are repeated after a reconnect, since repeating them is harmless.
    (t.lose_session)();
    assert_eq!(
        hsm.find(&key.object_id).unwrap().unwrap().public_key,
        key.public_key
    );
    assert!(hsm.attributes(&key.object_id).unwrap().is_non_exportable());
}

fn a_full_token_refuses_a_new_key_clearly(open: Open) {
    // Eight objects in all: four key pairs on PKCS#11 (two objects each), seven on the mock
    // (one each, beside its authentication key). Each opener sets its own objects per key.
    let t = open(DeviceLimits {
        message: None,
        objects: Some((8, 0)),
    });
    let per_key = t.per_key;
    let hsm = t.hsm.as_ref();
    let mut made = 0;
    let refused = loop {
        match hsm.generate_ed25519(&format!("ak_{made}")) {
            Ok(_) => made += 1,
            Err(e) => break e,
        }
        assert!(made <= 8, "a full token kept making keys");
    };
    assert!(made >= 1, "no room at all: {refused}");
    match &refused {
        Error::TokenFull { held, capacity } => {
            assert_eq!(*capacity, 8);
            assert!(held + per_key > 8, "{refused}");
        }
        other => panic!("expected TokenFull, got {other:?}"),
    }
    assert!(refused.to_string().contains("revoke keys"), "{refused}");
    // Nothing was made, and what was made still signs.
    assert_eq!(hsm.list().unwrap().len(), made);
    let key = hsm.find_by_label("ak_0").unwrap().remove(0);
    let signature = hsm.sign(&key.object_id, b"still").unwrap();
    assert!(verify(&key.public_key, b"still", &signature));
}

fn a_message_over_the_device_limit_is_refused_before_the_device_sees_it(open: Open) {
    let t = open(DeviceLimits {
        message: Some(100),
        objects: None,
    });
    let hsm = t.hsm.as_ref();
    let key = hsm.generate_ed25519("ak_long").unwrap();
    let at_limit = [7u8; 100];
    let signature = hsm.sign(&key.object_id, &at_limit).unwrap();
    assert!(verify(&key.public_key, &at_limit, &signature));
    let before = t.commands.as_ref().map(|count| count());
    let refused = hsm.sign(&key.object_id, &[7u8; 101]).unwrap_err();
    assert!(
        matches!(
            refused,
            Error::MessageTooLong {
                len: 101,
                limit: 100
            }
        ),
        "{refused}"
    );
    if let (Some(before), Some(count)) = (before, &t.commands) {
        assert_eq!(count(), before, "the device was not asked");
    }
}

fn many_threads_sign_at_once(open: Open) {
    let t = open(DeviceLimits::default());
    let key = t.hsm.generate_ed25519("ak_pool").unwrap();
    std::thread::scope(|scope| {
        for thread in 0..6 {
            let (hsm, key) = (&t.hsm, &key);
            scope.spawn(move || {
                for i in 0..20 {
                    let message = format!("thread {thread} message {i}");
                    let signature = hsm.sign(&key.object_id, message.as_bytes()).unwrap();
                    assert!(verify(&key.public_key, message.as_bytes(), &signature));
                }
            });
        }
    });
}

/// Each test, once per backend.
macro_rules! every_backend {
    ($($test:ident),* $(,)?) => {
        every_backend!(@on softhsm_printable, $($test),*);
        every_backend!(@on softhsm_oid, $($test),*);
        every_backend!(@on kryoptic_printable, $($test),*);
        every_backend!(@on kryoptic_oid, $($test),*);
        every_backend!(@on yubihsm_mock, $($test),*);
    };
    (@on $backend:ident, $($test:ident),*) => {
        mod $backend {
            $(
                #[test]
                fn $test() {
                    super::$test(super::$backend);
                }
            )*
        }
    };
}

every_backend!(
    generated_keys_never_leave_the_token_and_sign_ed25519,
    random_bytes_come_from_the_token,
    the_seal_key_gives_the_same_data_key_back,
    a_lost_session_is_reported_once_without_a_second_signature,
    a_full_token_refuses_a_new_key_clearly,
    a_message_over_the_device_limit_is_refused_before_the_device_sees_it,
    many_threads_sign_at_once,
);

/// The whole appliance on the native YubiHSM backend, in its own process, reaching the MockHsm
/// through the connector front as it would reach `yubihsm-connector`: provisioning, a key made
/// and signing for git through stock `ssh`, the signature checked by stock `ssh-keygen`, the
/// key's attributes, revocation destroying the device object, and a restart on the same device.
#[test]
fn the_appliance_runs_end_to_end_on_the_native_yubihsm_backend() {
    use std::os::unix::fs::PermissionsExt as _;

    use crate::common::{Appliance, assert_git_signature, token_keys};

    let device = MockConnector::start();
    let auth_dir = tempfile::tempdir().unwrap();
    let auth = auth_dir.path().join("yubihsm-auth");
    std::fs::write(&auth, "0001password").unwrap();
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = device.url();
    let token = [
        ("SSHSIGN_HSM_PROFILE", "yubihsm2-native"),
        ("SSHSIGN_YUBIHSM_CONNECTOR", url.as_str()),
        ("SSHSIGN_PKCS11_PIN_FILE", auth.to_str().unwrap()),
    ];
    let mut appliance = Appliance::start_on(&token, &[]);
    let (status, health) = appliance.http_get("/healthz");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["token"]["manufacturer"], "Yubico", "{health}");
    assert!(
        health["token"]["module"].as_str().unwrap().contains(&url),
        "{health}"
    );
    // 256 objects, less the appliance's own keys twice over and a login key.
    assert_eq!(health["signing_keys"]["limit"], 249, "{health}");

    let alice = appliance.user("alice");
    let key = alice.cmd("create-key --scope git").ok().clone();
    let key_id = key["key_id"].as_str().unwrap().to_owned();
    let public_key = key["public_key"].as_str().unwrap().to_owned();
    let payload = b"tree 0123\nauthor alice\n\nsigned by a YubiHSM\n";
    let before = device.commands();
    let signed = alice.run(&format!("sign --type git --key-id {key_id}"), payload);
    let signature = signed.ok()["signature"].as_str().unwrap().to_owned();
    assert!(device.commands() > before, "the device made the signature");
    assert_git_signature(appliance.dir.path(), &public_key, &signature, payload);

    // The device's own account of the key.
    let store = appliance.store.clone();
    let in_device = token_keys(&store, &token)
        .iter()
        .find(|k| k["label"] == key_id.as_str())
        .expect("the key is on the device")
        .clone();
    assert_eq!(in_device["fingerprint"], key["fingerprint"]);
    assert_eq!(in_device["attributes"]["extractable"], false);
    assert_eq!(in_device["attributes"]["never_extractable"], true);

    // A restart finds the appliance keys and the user's key on the device again.
    appliance.restart();
    let alice = alice.at(&appliance);
    let again = alice.run(&format!("sign --type git --key-id {key_id}"), payload);
    assert_eq!(again.ok()["public_key"], public_key.as_str());

    assert_eq!(
        alice.cmd(&format!("revoke --key-id {key_id}")).ok()["status"],
        "revoked"
    );
    let listing = token_keys(&store, &token);
    assert!(
        !listing.iter().any(|k| k["label"] == key_id.as_str()),
        "revocation deletes the device object: {listing:?}"
    );
}

/// Several tokens as one, of different backends: a SoftHSMv2 token (the primary) and the native
/// YubiHSM backend on MockHsm. New keys go to the tokens in turn; each key signs on its own
/// token; a token that stops answering is reported by the health check and skipped by placement
/// while keys on the other go on signing; once it is back, so are its keys.
#[test]
fn a_pool_of_tokens_places_keys_in_turn_and_survives_a_failing_token() {
    use sshsign::hsm::pool::TokenPool;

    let soft = Arc::new(
        soft_token(
            SoftToken::SoftHsm,
            2,
            EcParamsForm::Printable,
            DeviceLimits::default(),
        )
        .0,
    );
    let device = MockConnector::start();
    let yubi: Arc<dyn Hsm> = Arc::new(
        YubiHsm::open(YubiHsmConfig {
            connector: device.url().parse().unwrap(),
            credentials: "0001password".into(),
            label: "YubiHSM".into(),
            sessions: 1,
            limits: DeviceLimits::default(),
            export: sshsign::hsm::KeyExport::Never,
        })
        .unwrap(),
    );
    let pool = TokenPool::new(vec![soft.clone(), Arc::clone(&yubi)]).unwrap();
    assert_eq!(
        pool.describe().sessions,
        3,
        "token threads for every session"
    );
    assert!(std::ptr::addr_eq(pool.primary(), soft.as_ref() as &dyn Hsm));

    let keys: Vec<_> = (0..6)
        .map(|n| pool.generate_ed25519(&format!("ak_{n}")).unwrap())
        .collect();
    let on_soft = soft.list().unwrap().len();
    let on_yubi = yubi.list().unwrap().len();
    assert_eq!((on_soft, on_yubi), (3, 3), "placed in turn");
    for key in &keys {
        let signature = pool.sign(&key.object_id, b"pooled").unwrap();
        assert!(verify(&key.public_key, b"pooled", &signature));
        assert!(pool.attributes(&key.object_id).unwrap().is_non_exportable());
    }
    assert_eq!(pool.list().unwrap().len(), 6);
    assert_eq!(pool.find_by_label("ak_4").unwrap(), vec![keys[4].clone()]);
    // The seal key and random bytes come from the primary.
    let seal = pool.generate_seal_key("sshsign-seal").unwrap();
    assert_eq!(
        soft.find_seal_keys("sshsign-seal").unwrap(),
        vec![seal.clone()]
    );
    let (data_key, stored) = pool.new_data_key(&seal).unwrap();
    assert_eq!(*pool.open_data_key(&seal, &stored).unwrap(), *data_key);
    assert!(pool.health().iter().all(|t| t.error.is_none()));

    // The YubiHSM is unplugged.
    device.set_down(true);
    let health = pool.health();
    assert!(health[0].error.is_none(), "{health:?}");
    assert!(health[1].error.is_some(), "{health:?}");
    let (soft_keys, yubi_keys): (Vec<_>, Vec<_>) = keys
        .iter()
        .partition(|k| soft.find(&k.object_id).unwrap().is_some());
    for key in &soft_keys {
        let signature = pool.sign(&key.object_id, b"still").unwrap();
        assert!(verify(&key.public_key, b"still", &signature));
    }
    let refused = pool.sign(&yubi_keys[0].object_id, b"down").unwrap_err();
    assert!(!matches!(refused, Error::KeyNotFound(_)), "{refused}");
    // New keys go to the token that answers.
    for n in 0..3 {
        let key = pool.generate_ed25519(&format!("ak_down_{n}")).unwrap();
        assert!(soft.find(&key.object_id).unwrap().is_some());
    }
    // Listing shows what the answering token holds.
    assert_eq!(pool.list().unwrap().len(), 6);

    // Plugged in again: its keys sign, and placement takes it back.
    device.set_down(false);
    assert!(pool.health().iter().all(|t| t.error.is_none()));
    let signature = pool.sign(&yubi_keys[0].object_id, b"back").unwrap();
    assert!(verify(&yubi_keys[0].public_key, b"back", &signature));
    let more: Vec<_> = (0..2)
        .map(|n| pool.generate_ed25519(&format!("ak_back_{n}")).unwrap())
        .collect();
    assert!(
        more.iter()
            .any(|k| yubi.find(&k.object_id).unwrap().is_some()),
        "the YubiHSM gets keys again"
    );
}

/// The appliance on two tokens: its own keys on the first, users' keys placed in turn across
/// both, every signature checked by stock `ssh-keygen`, and `/healthz` listing both.
#[test]
fn the_appliance_runs_on_two_tokens() {
    use crate::common::{Appliance, SERVER, assert_git_signature, clean_command, token_keys};

    let appliance = Appliance::start_on(&[], &[]);
    // A second token in the same store, then the appliance restarted on both.
    let store = appliance.store.clone();
    let init = clean_command(SERVER)
        .args([
            "provision",
            "init-token",
            "--label",
            "second",
            "--so-pin-file",
        ])
        .arg(store.so_pin_file())
        .arg("--pin-file")
        .arg(store.pin_file())
        .envs(store.env())
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let both = format!("{},second", store.label);
    let mut appliance = appliance;
    appliance.restart_with(&[("SSHSIGN_PKCS11_TOKEN", both.as_str())]);

    let (status, health) = appliance.http_get("/healthz");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    let labels: Vec<_> = health["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["token"]["label"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(labels, [store.label.clone(), "second".to_owned()]);

    let alice = appliance.user("alice");
    let payload = b"tree 0123\nauthor alice\n\ntwo tokens\n";
    let mut made = Vec::new();
    for _ in 0..4 {
        let key = alice.cmd("create-key --scope git").ok().clone();
        let key_id = key["key_id"].as_str().unwrap().to_owned();
        let signed = alice.run(&format!("sign --type git --key-id {key_id}"), payload);
        let signature = signed.ok()["signature"].as_str().unwrap().to_owned();
        let public_key = key["public_key"].as_str().unwrap();
        assert_git_signature(appliance.dir.path(), public_key, &signature, payload);
        made.push(key_id);
    }
    // Each token's own listing: two of alice's keys each; the appliance's keys on the first.
    let on = |label: &str| {
        token_keys(&store, &[("SSHSIGN_PKCS11_TOKEN", label)])
            .iter()
            .map(|k| k["label"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let first = on(&store.label);
    let second = on("second");
    let users = |labels: &[String]| labels.iter().filter(|l| made.contains(l)).count();
    assert_eq!(
        (users(&first), users(&second)),
        (2, 2),
        "{first:?} {second:?}"
    );
    assert!(first.iter().any(|l| l == "sshsign-decision"), "{first:?}");
    assert!(
        !second.iter().any(|l| l.starts_with("sshsign-")),
        "{second:?}"
    );
}

/// Two YubiHSMs, whose 16-bit ids can clash: the pool never hands out an id another token uses,
/// makes no key while a token cannot be asked, and refuses to guess when two tokens hold the
/// same id (signing with the wrong one would sign with someone else's key).
#[test]
fn a_pool_of_devices_with_short_ids_never_mixes_up_their_keys() {
    use sshsign::hsm::pool::TokenPool;

    let open = |device: &MockConnector| -> Arc<dyn Hsm> {
        Arc::new(
            YubiHsm::open(YubiHsmConfig {
                connector: device.url().parse().unwrap(),
                credentials: "0001password".into(),
                label: format!("YubiHSM-{}", device.port),
                sessions: 1,
                limits: DeviceLimits::default(),
                export: sshsign::hsm::KeyExport::Never,
            })
            .unwrap(),
        )
    };
    let (a, b) = (MockConnector::start(), MockConnector::start());
    let (on_a, on_b) = (open(&a), open(&b));
    let pool = TokenPool::new(vec![Arc::clone(&on_a), Arc::clone(&on_b)]).unwrap();
    let key = pool.generate_ed25519("ak_one").unwrap();

    // While the other device cannot be asked, no key is made (and none is left behind).
    b.set_down(true);
    let before = on_a.list().unwrap().len();
    for n in 0..3 {
        let refused = pool
            .generate_ed25519(&format!("ak_wait_{n}"))
            .expect_err("a key was made while its id could not be checked");
        if n > 0 {
            // Once the down device is known to be failing, the answer says why.
            assert!(refused.to_string().contains("try again"), "{refused}");
        }
    }
    assert_eq!(on_a.list().unwrap().len(), before);
    b.set_down(false);

    // The same id on both devices (put there behind the pool's back): a pool that has not yet
    // seen the key refuses to pick one.
    let holder = if on_a.find(&key.object_id).unwrap().is_some() {
        &b
    } else {
        &a
    };
    let id = u16::from_be_bytes(key.object_id.as_bytes().try_into().unwrap());
    let direct = yubihsm::Client::open(
        yubihsm::Connector::http(&yubihsm::HttpConfig {
            addr: "127.0.0.1".into(),
            port: holder.port,
            timeout_ms: 5_000,
        }),
        yubihsm::Credentials::default(),
        false,
    )
    .unwrap();
    direct
        .generate_asymmetric_key(
            id,
            yubihsm::object::Label::from("impostor"),
            yubihsm::Domain::DOM1,
            yubihsm::Capability::SIGN_EDDSA,
            yubihsm::asymmetric::Algorithm::Ed25519,
        )
        .unwrap();
    let fresh = TokenPool::new(vec![on_a, on_b]).unwrap();
    let ambiguous = fresh.sign(&key.object_id, b"which?").unwrap_err();
    assert!(ambiguous.to_string().contains("on 2 tokens"), "{ambiguous}");
}
