//! The PKCS#11 backend against a SoftHSMv2 token, in this process.

use std::sync::Arc;

use sshsign::hsm::{Error, Hsm as _};
use sshsign::sshsig::verify_ed25519;

use crate::common::in_process_token;

#[test]
fn generated_keys_never_leave_the_token_and_sign_ed25519() {
    let (hsm, _store) = in_process_token(2);
    let key = hsm.generate_ed25519("ak_test").unwrap();
    assert_eq!(key.label, "ak_test");

    let attributes = hsm.attributes(&key.object_id).unwrap();
    assert!(attributes.sensitive, "{attributes:?}");
    assert!(!attributes.extractable, "{attributes:?}");
    assert!(
        attributes.never_extractable && attributes.always_sensitive,
        "{attributes:?}"
    );
    assert!(
        attributes.private && attributes.token && attributes.sign,
        "{attributes:?}"
    );
    assert!(attributes.is_non_exportable());

    let signature = hsm.sign(&key.object_id, b"message").unwrap();
    verify_ed25519(&key.public_key, b"message", &signature).unwrap();
    assert!(verify_ed25519(&key.public_key, b"other", &signature).is_err());

    let found = hsm.find(&key.object_id).unwrap().unwrap();
    assert_eq!(found.public_key, key.public_key);
    assert_eq!(hsm.find_by_label("ak_test").unwrap(), vec![found]);
    assert!(hsm.find_by_label("ak_other").unwrap().is_empty());

    hsm.destroy(&key.object_id).unwrap();
    assert_eq!(hsm.find(&key.object_id).unwrap(), None);
    assert!(matches!(
        hsm.sign(&key.object_id, b"x"),
        Err(Error::KeyNotFound(_))
    ));
    assert!(matches!(
        hsm.attributes(&key.object_id),
        Err(Error::KeyNotFound(_))
    ));
}

#[test]
fn random_bytes_come_from_the_token() {
    let (hsm, _store) = in_process_token(1);
    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    hsm.random(&mut a).unwrap();
    hsm.random(&mut b).unwrap();
    assert_ne!(a, b);
    assert_ne!(a, [0u8; 32]);
}

#[test]
fn stopping_the_token_threads_ends_them_and_refuses_later_calls() {
    let (hsm, _store) = in_process_token(2);
    let hsm = Arc::new(hsm);
    let token = sshsign::hsm::Token::new(hsm.clone()).unwrap();
    // Ours, the handle's, and one per token thread.
    assert_eq!(Arc::strong_count(&hsm), 4);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(token.random::<16>()).unwrap();

    token.stop();
    // The threads have ended, and dropped their hold on the module with them.
    assert_eq!(Arc::strong_count(&hsm), 2);
    let refused = runtime.block_on(token.random::<16>()).unwrap_err();
    assert!(matches!(refused, Error::Worker(_)), "{refused}");
    // Stopping twice is harmless; the module itself still answers.
    token.stop();
    let mut bytes = [0u8; 16];
    hsm.random(&mut bytes).unwrap();

    // Dropping the last handle waits for the threads too.
    let token = sshsign::hsm::Token::new(hsm.clone()).unwrap();
    let copy = token.clone();
    drop(token);
    assert_eq!(Arc::strong_count(&hsm), 5, "a copy still holds the threads");
    drop(copy);
    assert_eq!(Arc::strong_count(&hsm), 2);
}

#[test]
fn the_session_pool_signs_from_many_threads() {
    let (hsm, _store) = in_process_token(3);
    let hsm = Arc::new(hsm);
    let key = hsm.generate_ed25519("ak_pool").unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let hsm = Arc::clone(&hsm);
            let key = key.clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    let message = format!("thread {t} message {i}");
                    let signature = hsm.sign(&key.object_id, message.as_bytes()).unwrap();
                    verify_ed25519(&key.public_key, message.as_bytes(), &signature).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(hsm.describe().sessions, 3);
}

#[test]
fn a_lost_login_is_reported_once_then_the_pool_reconnects() {
    let (hsm, _store) = in_process_token(2);
    let key = hsm.generate_ed25519("ak_loss").unwrap();
    hsm.sign(&key.object_id, b"before").unwrap();

    // C_Logout ends the login of every session, as a token restart does.
    hsm.logout().unwrap();
    match hsm.sign(&key.object_id, b"during") {
        Err(Error::SessionLost { cause, reconnect }) => {
            assert!(cause.contains("UserNotLoggedIn"), "{cause}");
            assert!(reconnect.contains("reconnected"), "{reconnect}");
        }
        other => panic!("expected a reported session loss, got {other:?}"),
    }
    // The caller decides to retry; the pool has logged in again.
    let signature = hsm.sign(&key.object_id, b"after").unwrap();
    verify_ed25519(&key.public_key, b"after", &signature).unwrap();

    // Reads are retried after a reconnect, since repeating them is harmless.
    hsm.logout().unwrap();
    assert_eq!(
        hsm.find(&key.object_id).unwrap().unwrap().public_key,
        key.public_key
    );
    assert!(hsm.attributes(&key.object_id).unwrap().is_non_exportable());
}

#[test]
fn other_devices_curve_and_object_id_forms_work() {
    use sshsign::hsm::pkcs11::{Pkcs11Config, Pkcs11Hsm};
    use sshsign::hsm::profile::{EcParamsForm, ObjectIdForm};
    let (_hsm, store) = in_process_token(1);
    for (ec_params, object_id, id_len) in [
        (EcParamsForm::Oid, ObjectIdForm::Raw2, 2),
        (EcParamsForm::Printable, ObjectIdForm::Hex16, 32),
    ] {
        let hsm = Pkcs11Hsm::open(Pkcs11Config {
            module: store.module.clone(),
            token_label: store.label.clone(),
            pin: sshsign::secret::read_secret_file(&store.pin_file()).unwrap(),
            sessions: 1,
            ec_params,
            object_id,
        })
        .unwrap();
        let key = hsm.generate_ed25519("ak_form").unwrap();
        assert_eq!(key.object_id.as_bytes().len(), id_len);
        let signature = hsm.sign(&key.object_id, b"m").unwrap();
        verify_ed25519(&key.public_key, b"m", &signature).unwrap();
    }
}
