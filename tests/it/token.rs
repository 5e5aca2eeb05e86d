//! The token threads, and the PKCS#11 backend's device settings on SoftHSMv2 (what every backend
//! must do is in [`crate::backends`]).

use std::sync::Arc;

use sshsign::hsm::pkcs11::{Pkcs11Config, Pkcs11Hsm};
use sshsign::hsm::profile::ObjectIdForm;
use sshsign::hsm::{Error, Hsm as _};
use sshsign::sshsig::verify_ed25519;

use crate::common::in_process_token;

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

/// Opens `store`'s token again with other device settings.
fn reopen(
    store: &sshsign::softhsm::SoftHsmStore,
    configure: impl FnOnce(&mut Pkcs11Config),
) -> Result<Pkcs11Hsm, Error> {
    let mut config = Pkcs11Config::new(
        store.module.clone(),
        store.label.clone(),
        sshsign::secret::read_secret_file(&store.pin_file()).unwrap(),
        1,
    );
    configure(&mut config);
    Pkcs11Hsm::open(config)
}

#[test]
fn other_devices_object_id_forms_work() {
    let (_hsm, store) = in_process_token(1);
    for (object_id, id_len) in [(ObjectIdForm::Raw2, 2), (ObjectIdForm::Hex16, 32)] {
        let hsm = reopen(&store, |c| c.object_id = object_id).unwrap();
        let key = hsm.generate_ed25519("ak_form").unwrap();
        assert_eq!(key.object_id.as_bytes().len(), id_len);
        if object_id == ObjectIdForm::Hex16 {
            assert!(key.object_id.as_bytes().iter().all(u8::is_ascii_hexdigit));
        }
        let signature = hsm.sign(&key.object_id, b"m").unwrap();
        verify_ed25519(&key.public_key, b"m", &signature).unwrap();
        hsm.destroy(&key.object_id).unwrap();
    }
}

/// NetHSM's module shows a key's id as its label: the appliance names its keys by id there.
#[test]
fn where_labels_are_ids_the_label_becomes_the_id() {
    let (_hsm, store) = in_process_token(1);
    let hsm = reopen(&store, |c| c.label_is_id = true).unwrap();
    let key = hsm.generate_ed25519("sshsign-decision").unwrap();
    assert_eq!(key.object_id.as_bytes(), b"sshsign-decision");
    assert_eq!(hsm.find_by_label("sshsign-decision").unwrap(), vec![key]);
    let seal = hsm.generate_seal_key("sshsign-seal").unwrap();
    assert_eq!(seal.as_bytes(), b"sshsign-seal");
    // A second key under the same label would be a second object with the same id.
    let twice = hsm.generate_ed25519("sshsign-decision").unwrap_err();
    assert!(
        twice.to_string().contains("already on the token"),
        "{twice}"
    );
}

/// `key_login = "so"` needs a module that logs in per session (nethsm-pkcs11); SoftHSMv2 shares
/// one login among all sessions, and the appliance says so instead of failing obscurely.
#[test]
fn an_administrator_login_beside_the_user_is_refused_clearly_where_logins_are_shared() {
    let (_hsm, store) = in_process_token(1);
    let refused = reopen(&store, |c| {
        c.admin_pin = Some(sshsign::secret::read_secret_file(&store.so_pin_file()).unwrap());
    })
    .unwrap_err();
    let text = refused.to_string();
    assert!(matches!(refused, Error::Login(_)), "{text}");
    assert!(
        text.contains("shares one login") && text.contains("nethsm-pkcs11"),
        "{text}"
    );
}
