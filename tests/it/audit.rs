//! The audit log end to end: entries for every action, proofs checked offline by the client,
//! rollback and fork detection, tampering at rest, failing closed, and a kill -9 loop.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use sha2::{Digest as _, Sha512};
use sshsign::audit::note;

use crate::common::{Appliance, SHIM, User, clean_command, copy_dir, write_file};
use crate::in_process::{InProcess, caller, confirmed_totp, in_process, ssh_decide, terms};

/// `sshsign ARGS` as `user`, with its audit state in `state`.
pub fn shim(user: &User, state: &Path, args: &[&str]) -> Output {
    clean_command(SHIM)
        .args(args)
        .envs(user.shim_env())
        .env("HOME", "/nonexistent")
        .env("XDG_STATE_HOME", state)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn every_action_is_an_entry_and_proofs_verify_offline() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let key = alice.create_key("--scope git");
    alice
        .run(
            &format!(r#"sign --key-id {key} --metadata {{"secret_amount": 4242}}"#),
            b"confidential payload",
        )
        .ok();
    alice
        .run(&format!("sign --type file --key-id {key}"), b"x")
        .failed_with("scope_denied");
    alice.cmd(&format!("revoke --key-id {key}")).ok();
    let index = each_action_is_an_entry_without_secrets(&alice);
    a_stranger_sees_none_of_it(&appliance, index);
    let dir = appliance.dir.path();
    let vkey = a_proof_checks_offline_and_a_changed_entry_does_not(&alice, dir, index);
    a_consistency_proof_checks_offline(&alice, dir, &vkey);
}

/// Alice's entries are her four actions, with hashes and rule names but no metadata or
/// document; returns the index of her signature's entry.
fn each_action_is_an_entry_without_secrets(alice: &User) -> u64 {
    let entries = alice.cmd("audit-entries");
    let list = entries.ok()["entries"].as_array().unwrap().clone();
    let actions: Vec<(String, String)> = list
        .iter()
        .map(|e| {
            (
                e["entry"]["action"].as_str().unwrap().to_owned(),
                e["entry"]["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("create_key", "done"),
        ("sign", "signed"),
        ("sign", "denied"),
        ("revoke_key", "done"),
    ];
    assert_eq!(actions, expected.map(|(a, r)| (a.to_owned(), r.to_owned())));
    let text = serde_json::to_string(&list).unwrap();
    assert!(
        !text.contains("4242") && !text.contains("confidential"),
        "{text}"
    );
    // Newest first, a page at a time, going back with `next`; both readings agree.
    let mut back = Vec::new();
    let mut before = u64::MAX;
    loop {
        let page = alice.cmd(&format!("audit-entries --before {before} --limit 3"));
        let page = page.ok();
        back.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next"].as_u64() {
            Some(next) => before = next,
            None => break,
        }
    }
    back.reverse();
    assert_eq!(back, list);
    alice
        .cmd("audit-entries --before 5 --from 1")
        .failed_with("invalid_usage");
    let signed = &list[1]["entry"];
    let digest = sshsign::hex::encode(&Sha512::digest(b"confidential payload"));
    assert_eq!(signed["payload_sha512"], digest.as_str());
    assert!(
        signed["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().ends_with(":scope=pass"))
    );
    list[1]["index"].as_u64().unwrap()
}

fn a_stranger_sees_none_of_it(appliance: &Appliance, index: u64) {
    let bob = appliance.user("bob");
    assert!(
        bob.cmd("audit-entries").ok()["entries"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    bob.cmd(&format!("audit-proof --index {index}"))
        .failed_with("invalid_argument");
}

/// Returns the audit log's verifier key.
fn a_proof_checks_offline_and_a_changed_entry_does_not(
    alice: &User,
    dir: &Path,
    index: u64,
) -> String {
    let proof = alice.cmd(&format!("audit-proof --index {index}"));
    let vkey = proof.ok()["verifier_key"].as_str().unwrap().to_owned();
    let saved = write_file(dir, "proof.json", &proof.stdout);
    let verified = shim(
        alice,
        dir,
        &["audit", "verify", "--key", &vkey, saved.to_str().unwrap()],
    );
    assert!(verified.status.success(), "{}", stderr(&verified));
    let mut forged: Value = proof.json.clone();
    forged["entry"] = forged["entry"]
        .as_str()
        .unwrap()
        .replace("signed", "denied")
        .into();
    let forged = write_file(dir, "forged.json", forged.to_string());
    let refused = shim(
        alice,
        dir,
        &["audit", "verify", "--key", &vkey, forged.to_str().unwrap()],
    );
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("proof"), "{}", stderr(&refused));
    vkey
}

fn a_consistency_proof_checks_offline(alice: &User, dir: &Path, vkey: &str) {
    // Checkpoint, then more entries, then a consistency proof between the two.
    let old = alice.cmd("audit-checkpoint");
    let old_size = old.ok()["size"].as_u64().unwrap();
    let old_file = write_file(dir, "old.json", &old.stdout);
    alice.create_key("");
    alice.create_key("");
    let consistency = alice.cmd(&format!("audit-consistency --from {old_size}"));
    assert!(consistency.ok()["to"].as_u64().unwrap() > old_size);
    let file = write_file(dir, "consistency.json", &consistency.stdout);
    let args = [
        "audit",
        "verify",
        "--key",
        vkey,
        "--old",
        old_file.to_str().unwrap(),
        file.to_str().unwrap(),
    ];
    let verified = shim(alice, dir, &args);
    assert!(verified.status.success(), "{}", stderr(&verified));
    let other_key = write_file(dir, "other.json", alice.cmd("audit-checkpoint").stdout);
    let wrong = shim(
        alice,
        dir,
        &[
            "audit",
            "verify",
            "--key",
            "x+00000000+AAAA",
            other_key.to_str().unwrap(),
        ],
    );
    assert!(!wrong.status.success());
    alice
        .cmd("audit-consistency --from 0")
        .failed_with("invalid_range");
    alice
        .cmd("audit-proof --index 99999")
        .failed_with("invalid_argument");
}

#[test]
fn the_client_catches_a_rolled_back_or_forked_log() {
    let mut appliance = Appliance::start();
    let alice = appliance.user("alice");
    let state = appliance.dir.path().join("state");
    alice.create_key("");
    let first = shim(&alice, &state, &["audit", "check"]);
    assert!(first.status.success(), "{}", stderr(&first));

    // A copy of the database and the log as they stand, then more history on top.
    appliance.stop();
    appliance.save_store("saved");
    let tlog = appliance.dir.path().join("db.tlog");
    let saved_tlog = appliance.dir.path().join("db.tlog-saved");
    copy_dir(&tlog, &saved_tlog);
    appliance.restart();
    let alice = alice.at(&appliance);
    for _ in 0..3 {
        alice.create_key("");
    }
    let grown = shim(&alice, &state, &["audit", "check"]);
    assert!(grown.status.success(), "{}", stderr(&grown));
    let seen: Value = serde_json::from_slice(&grown.stdout).unwrap();
    assert!(
        seen["size"].as_u64() > seen["previously_seen"].as_u64(),
        "{seen}"
    );

    // Rolled back: the older database is served again, under a new public name: the log's
    // origin is fixed by its key, so the client still knows it and sees the rollback.
    appliance.stop();
    appliance.restore_store("saved");
    std::fs::remove_dir_all(&tlog).unwrap();
    copy_dir(&saved_tlog, &tlog);
    appliance.restart_with(&[("SSHSIGN_HTTP_DOMAIN", "sign.example.com")]);
    let alice = alice.at(&appliance);
    let rolled_back = shim(&alice, &state, &["audit", "check"]);
    assert!(!rolled_back.status.success());
    assert!(
        stderr(&rolled_back).contains("ROLLED BACK"),
        "{}",
        stderr(&rolled_back)
    );

    // Forked: the older database grows another history past the size seen.
    for _ in 0..6 {
        alice.create_key("--scope other");
    }
    let forked = shim(&alice, &state, &["audit", "check"]);
    assert!(!forked.status.success());
    assert!(stderr(&forked).contains("FORKED"), "{}", stderr(&forked));
}

/// The committed right-edge file of `kind` (`0` for leaf hashes, `entries`) in a log of fewer
/// than 256 entries: its widest partial tile.
fn edge_file(tlog: &Path, kind: &str) -> std::path::PathBuf {
    let partials = tlog.join("tile").join(kind).join("000.p");
    std::fs::read_dir(&partials)
        .unwrap()
        .filter_map(|item| item.unwrap().file_name().to_str()?.parse::<u32>().ok())
        .max()
        .map(|width| partials.join(width.to_string()))
        .unwrap()
}

#[test]
fn a_log_changed_at_rest_stops_signing_or_the_appliance() {
    let mut appliance = Appliance::start();
    let alice = appliance.user("alice");
    for _ in 0..4 {
        alice.create_key("");
    }
    let vkey = alice.cmd("audit-checkpoint").ok()["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    appliance.stop();
    if appliance.database().is_some() {
        return changed_in_the_database(&mut appliance, &alice, &vkey);
    }
    let tlog = appliance.dir.path().join("db.tlog");
    let verify_full = || {
        clean_command(crate::common::SERVER)
            .args(["audit", "verify", "--full", "--path"])
            .arg(&tlog)
            .args(["--key", &vkey])
            .output()
            .unwrap()
    };
    let clean = verify_full();
    assert!(clean.status.success(), "{}", stderr(&clean));
    let report: Value = serde_json::from_slice(&clean.stdout).unwrap();
    assert!(report["entries"].as_u64().unwrap() >= 4, "{report}");
    assert_eq!(report["checkpoint_size"], report["entries"], "{report}");
    let (bundle, hashes) = (edge_file(&tlog, "entries"), edge_file(&tlog, "0"));
    let (bundle_bytes, hash_bytes) = (
        std::fs::read(&bundle).unwrap(),
        std::fs::read(&hashes).unwrap(),
    );
    let restore = || {
        for (path, bytes) in [(&bundle, &bundle_bytes), (&hashes, &hash_bytes)] {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    };

    // Tiles that do not hash to the head, or a bundle gone: it does not start.
    let mut edited_hash = hash_bytes.clone();
    edited_hash[33] ^= 1;
    type Tamper = Box<dyn Fn()>;
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "a leaf hash edited",
            Box::new({
                let hashes = hashes.clone();
                move || std::fs::write(&hashes, &edited_hash).unwrap()
            }),
        ),
        (
            "the entry bundle deleted",
            Box::new({
                let bundle = bundle.clone();
                move || std::fs::remove_file(&bundle).unwrap()
            }),
        ),
    ];
    for (name, change) in cases {
        change();
        let started = clean_command(crate::common::SERVER)
            .arg("serve")
            .envs(appliance.store.env())
            .env("SSHSIGN_LISTEN_ADDR", "127.0.0.1:0")
            .env("SSHSIGN_HTTP_ADDR", "127.0.0.1:0")
            .env("SSHSIGN_DB_PATH", appliance.dir.path().join("db"))
            .env(
                "SSHSIGN_HOST_KEY_PATH",
                appliance.dir.path().join("host_key"),
            )
            .output()
            .unwrap();
        assert!(!started.status.success(), "{name}: started");
        assert!(
            stderr(&started).contains("audit log"),
            "{name}: {}",
            stderr(&started)
        );
        restore();
    }

    // An entry edited in place (its tiles untouched): it starts, its full check finds the
    // entry, and from then on nothing is signed or logged.
    let edited =
        String::from_utf8(bundle_bytes.clone())
            .unwrap()
            .replacen("create_key", "revoke_key", 1);
    assert_ne!(edited.as_bytes(), bundle_bytes);
    std::fs::write(&bundle, edited).unwrap();
    let offline = verify_full();
    assert!(
        !offline.status.success(),
        "the offline full check passed an edited entry"
    );
    assert!(
        stderr(&offline).contains("does not match") || stderr(&offline).contains("do not hash"),
        "{}",
        stderr(&offline)
    );
    appliance.restart();
    let health = wait_for_check(&appliance);
    assert_eq!(health["status"], "audit_tampered", "{health}");
    assert_eq!(health["audit"]["check"]["state"], "tampered", "{health}");
    let alice = alice.at(&appliance);
    alice.cmd("create-key").failed_with("audit_unavailable");
    alice
        .cmd("audit-checkpoint")
        .failed_with("audit_unavailable");

    // Restored, it checks clean and serves.
    appliance.stop();
    restore();
    appliance.restart();
    let health = wait_for_check(&appliance);
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["audit"]["check"]["state"], "verified", "{health}");
    assert_eq!(
        health["audit"]["check"]["checked"], health["audit"]["entries"],
        "{health}"
    );
    alice.at(&appliance).create_key("");
}

/// [`a_log_changed_at_rest_stops_signing_or_the_appliance`] for the log several appliances
/// share in PostgreSQL: rows changed behind the appliances' backs.
fn changed_in_the_database(appliance: &mut Appliance, alice: &User, vkey: &str) {
    let psql = |appliance: &Appliance, sql: &str| {
        appliance
            .database()
            .unwrap()
            .psql("sshsign", sql)
            .unwrap()
            .trim()
            .to_owned()
    };
    let verify_full = |appliance: &Appliance| {
        appliance.server_command(&["audit", "verify", "--full", "--key", vkey])
    };
    let clean = verify_full(appliance);
    assert!(clean.status.success(), "{}", stderr(&clean));
    let report: Value = serde_json::from_slice(&clean.stdout).unwrap();
    assert!(report["entries"].as_u64().unwrap() >= 4, "{report}");
    assert_eq!(report["checkpoint_size"], report["entries"], "{report}");

    // A leaf hash edited in the tile that the signed root is computed from: it does not start.
    let tile = "WHERE level = 0 AND index = 0";
    let hashes = psql(
        appliance,
        &format!("SELECT encode(hashes, 'hex') FROM sshsign_audit_tiles {tile}"),
    );
    psql(
        appliance,
        &format!(
            "UPDATE sshsign_audit_tiles SET hashes = set_byte(hashes, 33, \
             get_byte(hashes, 33) # 1) {tile}"
        ),
    );
    let started = appliance.server_command(&["serve"]);
    assert!(!started.status.success(), "started over an edited tile");
    assert!(
        stderr(&started).contains("audit log"),
        "{}",
        stderr(&started)
    );
    psql(
        appliance,
        &format!(
            "UPDATE sshsign_audit_tiles SET hashes = decode('{hashes}', 'hex') WHERE level = 0 AND index = 0"
        ),
    );

    // An entry edited in place (its tiles untouched): it starts, its full check finds the
    // entry, and from then on nothing is signed or logged; the offline check finds it too.
    let index = psql(
        appliance,
        "SELECT min(index) FROM sshsign_audit_entries \
         WHERE convert_from(entry, 'UTF8') LIKE '%create_key%'",
    );
    let original = psql(
        appliance,
        &format!("SELECT encode(entry, 'hex') FROM sshsign_audit_entries WHERE index = {index}"),
    );
    psql(
        appliance,
        &format!(
            "UPDATE sshsign_audit_entries SET entry = convert_to(replace(convert_from(entry, \
             'UTF8'), 'create_key', 'revoke_key'), 'UTF8') WHERE index = {index}"
        ),
    );
    let offline = verify_full(appliance);
    assert!(
        !offline.status.success(),
        "the full check passed an edited entry"
    );
    assert!(
        stderr(&offline).contains("does not match") || stderr(&offline).contains("do not hash"),
        "{}",
        stderr(&offline)
    );
    appliance.restart();
    let health = wait_for_check(appliance);
    assert_eq!(health["status"], "audit_tampered", "{health}");
    let alice = alice.at(appliance);
    alice.cmd("create-key").failed_with("audit_unavailable");

    // Restored, it checks clean and serves.
    appliance.stop();
    psql(
        appliance,
        &format!(
            "UPDATE sshsign_audit_entries SET entry = decode('{original}', 'hex') \
             WHERE index = {index}"
        ),
    );
    appliance.restart();
    let health = wait_for_check(appliance);
    assert_eq!(health["audit"]["check"]["state"], "verified", "{health}");
    alice.at(appliance).create_key("");
}

/// `/healthz` once the audit log's full check has ended.
fn wait_for_check(appliance: &Appliance) -> Value {
    for _ in 0..200 {
        let (_, health) = appliance.http_get("/healthz");
        let state = health["audit"]["check"]["state"].as_str().unwrap_or("");
        if state == "verified" || state == "tampered" {
            return health;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the audit log's full check did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_log_cannot_be_written_nothing_is_signed() {
    use sshsign::appliance::{Grant, SignInput};
    let InProcess { core, sink, .. } = in_process();
    let caller = caller(&core, 5).await;
    let key = core
        .create_key(
            &caller,
            Grant {
                terms: terms("autonomous"),
                grantee: None,
            },
        )
        .await
        .unwrap()
        .0
        .key;
    let input = |payload: &[u8]| SignInput {
        key_id: key.key_id.clone(),
        namespace: "git".into(),
        payload: payload.to_vec(),
        metadata: Default::default(),
        context: Default::default(),
        ttl: None,
    };
    core.sign(&caller, input(b"before")).await.unwrap();

    sink.failing.store(true, Ordering::SeqCst);
    let size = core.audit().head().size;
    let refused = core.sign(&caller, input(b"during")).await.unwrap_err();
    assert_eq!(refused.code(), "audit_unavailable");
    assert_eq!(
        refused.public_message(),
        "audit log unavailable; nothing was signed"
    );
    assert_eq!(
        core.audit().head().size,
        size,
        "nothing was logged, so nothing was signed"
    );

    sink.failing.store(false, Ordering::SeqCst);
    core.sign(&caller, input(b"after")).await.unwrap();
    assert_eq!(core.audit().head().size, size + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_log_cannot_be_written_no_state_changes() {
    let InProcess { core, sink, .. } = in_process();
    let made = what_the_failing_log_will_be_asked_to_change(&core).await;
    sink.failing.store(true, Ordering::SeqCst);
    let size = core.audit().head().size;
    every_change_is_refused(&core, &made).await;
    assert_eq!(core.audit().head().size, size, "nothing was logged");
    nothing_changed(&core, &made);
    sink.failing.store(false, Ordering::SeqCst);
    the_same_changes_go_through_each_with_its_entry(&core, &made).await;
    assert!(core.audit().head().size >= size + 5);
}

/// What a failing log is asked to change: made while the log works.
struct Made {
    alice: sshsign::appliance::Caller,
    bob: sshsign::appliance::Caller,
    carol: sshsign::appliance::Caller,
    key: sshsign::views::PublicKeyView,
    granted: sshsign::policy::Authorization,
    api_key: sshsign::views::ApiKeyView,
    request: sshsign::views::ApprovalView,
    pending: sshsign::views::PendingCosignView,
    totp: sshsign::views::AuthenticatorView,
}

fn grant(tier: &str, grantee: Option<&str>) -> sshsign::appliance::Grant {
    sshsign::appliance::Grant {
        terms: terms(tier),
        grantee: grantee.map(str::to_owned),
    }
}

async fn what_the_failing_log_will_be_asked_to_change(
    core: &sshsign::appliance::Appliance,
) -> Made {
    use sshsign::appliance::{ApiScope, ApprovalInput, SignInput, SignOutcome};
    use sshsign::approval::decision::Method;
    let (alice, bob, carol) = (
        caller(core, 5).await,
        caller(core, 6).await,
        caller(core, 7).await,
    );
    let key = core
        .create_key(&alice, grant("autonomous", None))
        .await
        .unwrap()
        .0
        .key;
    core.allow_requester(&bob, alice.id()).await.unwrap();
    let granted = core
        .authorize(&alice, &key.key_id, grant("cosign", Some(bob.id())))
        .await
        .unwrap();
    let (api_key, secret) = core
        .create_api_key(&alice, "ci", vec![ApiScope::ApprovalCreate])
        .await
        .unwrap();
    let bearer = core
        .authenticate_api_key(&secret, ApiScope::ApprovalCreate)
        .unwrap();
    let request = core
        .request_approval(
            sshsign::appliance::Requester::ApiKey(&bearer),
            ApprovalInput {
                action: "Deploy".into(),
                methods: Some(vec![Method::Ssh]),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .request;
    let SignOutcome::Pending(pending) = core
        .sign(
            &bob,
            SignInput {
                key_id: key.key_id.clone(),
                namespace: "git".into(),
                payload: b"commit".to_vec(),
                metadata: Default::default(),
                context: Default::default(),
                ttl: None,
            },
        )
        .await
        .unwrap()
    else {
        panic!("a cosign grant makes a pending request");
    };
    let (totp, _) = confirmed_totp(core, &bob).await;
    Made {
        alice,
        bob,
        carol,
        key,
        granted,
        api_key,
        request,
        pending,
        totp,
    }
}

/// Every change is refused as `audit_unavailable`.
async fn every_change_is_refused(core: &sshsign::appliance::Appliance, made: &Made) {
    use sshsign::appliance::ApiScope;
    use sshsign::approval::decision::Verdict;
    let Made {
        alice,
        bob,
        carol,
        key,
        granted,
        api_key,
        request,
        pending,
        totp,
    } = made;
    let unavailable = |e: sshsign::appliance::Error| assert_eq!(e.code(), "audit_unavailable");
    unavailable(
        core.authorize(alice, &key.key_id, grant("autonomous", Some(bob.id())))
            .await
            .unwrap_err(),
    );
    unavailable(
        core.revoke_authorization(alice, &granted.authorization_id)
            .await
            .unwrap_err(),
    );
    unavailable(core.revoke(alice, &key.key_id).await.unwrap_err());
    unavailable(
        core.create_api_key(alice, "more", vec![ApiScope::ApprovalRead])
            .await
            .unwrap_err(),
    );
    unavailable(core.revoke_api_key(alice, &api_key.id).await.unwrap_err());
    unavailable(
        ssh_decide(core, alice, &request.id, Verdict::Approved)
            .await
            .unwrap_err(),
    );
    unavailable(
        ssh_decide(core, alice, &pending.pending_id, Verdict::Approved)
            .await
            .unwrap_err(),
    );
    unavailable(
        ssh_decide(core, alice, &pending.pending_id, Verdict::Rejected)
            .await
            .unwrap_err(),
    );
    unavailable(core.remove_authenticator(bob, &totp.id).await.unwrap_err());
    unavailable(core.allow_requester(carol, alice.id()).await.unwrap_err());
    unavailable(core.revoke_requester(bob, alice.id()).await.unwrap_err());
    unavailable(
        core.create_key(alice, grant("autonomous", None))
            .await
            .unwrap_err(),
    );
}

/// Nothing the refused changes would have touched changed.
fn nothing_changed(core: &sshsign::appliance::Appliance, made: &Made) {
    use sshsign::request::RequestStatus;
    let store = core.store();
    let Made {
        alice,
        bob,
        carol,
        key,
        granted,
        request,
        pending,
        totp,
        ..
    } = made;
    assert_eq!(store.authorizations_of_key(&key.key_id).unwrap().len(), 2);
    assert!(
        store
            .authorization(&granted.authorization_id)
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert!(
        store
            .signing_key(&key.key_id)
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert_eq!(store.signing_keys_of(alice.id()).unwrap().len(), 1);
    let keys = store.api_keys_of(alice.id()).unwrap();
    assert_eq!((keys.len(), keys[0].revoked_at), (1, None));
    let request = store.approval(&request.id).unwrap().unwrap();
    assert_eq!(
        (request.status, request.votes.len()),
        (RequestStatus::Pending, 0)
    );
    let pending = store.pending(&pending.pending_id).unwrap().unwrap();
    assert_eq!(pending.status, RequestStatus::Pending);
    assert!(store.authenticator(&totp.id).unwrap().is_some());
    assert!(store.consent(carol.id(), alice.id()).unwrap().is_none());
    assert!(store.consent(bob.id(), alice.id()).unwrap().is_some());
}

async fn the_same_changes_go_through_each_with_its_entry(
    core: &sshsign::appliance::Appliance,
    made: &Made,
) {
    use sshsign::approval::decision::Verdict;
    let Made {
        alice,
        key,
        granted,
        request,
        pending,
        ..
    } = made;
    ssh_decide(core, alice, &pending.pending_id, Verdict::Approved)
        .await
        .unwrap();
    ssh_decide(core, alice, &request.id, Verdict::Approved)
        .await
        .unwrap();
    core.revoke_authorization(alice, &granted.authorization_id)
        .await
        .unwrap();
    core.revoke(alice, &key.key_id).await.unwrap();
}

#[test]
fn after_kill_9_every_signature_a_client_received_has_its_entry() {
    // `SSHSIGN_KILL_CYCLES=1000 cargo test --test it after_kill_9` for the long run.
    let cycles: usize = std::env::var("SSHSIGN_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    // Signing flat out, as fast as the token goes: past one identity's quota.
    let mut appliance = Appliance::start_with(&[
        (
            "SSHSIGN_QUOTAS",
            "signatures=1000000/min, approval_requests=1000000/min",
        ),
        ("SSHSIGN_HTTP_RATE_PER_IP", "1000000"),
        ("SSHSIGN_HTTP_RATE_PER_KEY", "1000000"),
    ]);
    let alice = appliance.user("alice");
    let api_key = crate::approvals::api_key(&alice, "approval:create,approval:read");
    let created = alice.cmd("create-key");
    let key = created.ok()["key_id"].as_str().unwrap().to_owned();
    let public_key =
        sshsign::pubkey::parse_ed25519(created.json["public_key"].as_str().unwrap()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut received: Vec<(Vec<u8>, String)> = Vec::new();
    let mut cut_short = 0;
    let mut approvals = Approvals::default();

    for cycle in 0..cycles {
        if cycle > 0 {
            appliance.restart();
        }
        let (signed, errors) = sign_until_killed(
            &runtime,
            &mut appliance,
            &alice,
            &key,
            &api_key,
            cycle,
            &mut approvals,
        );
        received.extend(signed);
        cut_short += errors;
    }
    assert!(
        received.len() > cycles,
        "only {} signatures in {cycles} cycles",
        received.len()
    );
    assert!(cut_short > 0, "no request was ever cut short by the kill");
    // The figures the README quotes (seen with --nocapture).
    eprintln!(
        "{cycles} cycles: {} signatures received, {cut_short} requests cut short, {} approval \
         requests made, {} approved",
        received.len(),
        approvals.created.len(),
        approvals.approved.len()
    );

    // The log survived every crash: it starts, it verifies, and it holds every signature.
    appliance.restart();
    let alice = alice.at(&appliance);
    let logged = signed_digests(&alice);
    for (payload, signature) in &received {
        let signature = sshsign::sshsig::SshSig::from_armored(signature).unwrap();
        signature.verify("git", payload).unwrap();
        assert_eq!(signature.public_key(), &public_key);
        let digest = sshsign::hex::encode(&Sha512::digest(payload));
        assert!(
            logged.contains(&digest),
            "a signature without its entry: {}",
            String::from_utf8_lossy(payload)
        );
    }
    let state = appliance.dir.path().join("state");
    let check = shim(&alice, &state, &["audit", "check"]);
    assert!(check.status.success(), "{}", stderr(&check));

    // Every approval request a client was told was made exists; every one it was told was
    // approved is approved, by one vote, with a decision that verifies.
    assert!(!approvals.approved.is_empty(), "no approval went through");
    for id in &approvals.created {
        let status =
            crate::approvals::get(&appliance, &api_key, &format!("/api/v1/approvals/{id}"));
        assert_eq!(status.status, 200, "{id}: {:?}", status.json);
        if approvals.approved.contains(id) {
            assert_eq!(status.json["status"], "approved", "{id}");
            assert_eq!(status.json["votes"].as_array().unwrap().len(), 1, "{id}");
            let (code, verified) = appliance.http_get(&format!("/api/v1/approvals/{id}/verify"));
            assert_eq!(
                (code, verified["valid"].as_bool()),
                (200, Some(true)),
                "{id}"
            );
        }
    }
}

/// The approval requests clients were told were made, and those they were told were approved.
#[derive(Default)]
struct Approvals {
    created: Vec<String>,
    approved: HashSet<String>,
}

/// POSTs an approval request that may be decided over SSH, over a plain socket (the test's
/// HTTP helper wants the appliance itself, which the signing loop holds); its id if made.
fn request_approval(addr: std::net::SocketAddr, key: &str, action: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let body = serde_json::json!({"action": action, "methods": ["ssh"]}).to_string();
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    let head = format!(
        "POST /api/v1/approvals/request HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    if !reply.starts_with(b"HTTP/1.1 201") {
        return None;
    }
    let at = reply.windows(4).position(|w| w == b"\r\n\r\n")?;
    let json: Value = serde_json::from_slice(&reply[at + 4..]).ok()?;
    json["id"].as_str().map(str::to_owned)
}

/// Three clients sign with `key` as fast as they can, and a fourth makes approval requests
/// over REST and approves them over SSH, until the appliance is killed with SIGKILL
/// mid-flight; returns every signature they received and how many requests the kill cut short,
/// and adds to `approvals` what the fourth was told.
fn sign_until_killed(
    runtime: &tokio::runtime::Runtime,
    appliance: &mut Appliance,
    alice: &User,
    key: &str,
    api_key: &str,
    cycle: usize,
    approvals: &mut Approvals,
) -> (Vec<(Vec<u8>, String)>, usize) {
    const CLIENTS: usize = 3;
    let config = appliance.client_config(alice);
    let stop = Arc::new(AtomicBool::new(false));
    let approver = {
        let (config, stop, api_key) = (config.clone(), Arc::clone(&stop), api_key.to_owned());
        let addr = appliance.http_addr;
        runtime.spawn(async move {
            let mut told = Approvals::default();
            let Ok(connection) = sshsign::client::Connection::connect(&config).await else {
                return told;
            };
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let (key, action) = (api_key.clone(), format!("cycle {cycle} deploy {n}"));
                n += 1;
                let made =
                    tokio::task::spawn_blocking(move || request_approval(addr, &key, &action));
                let Ok(Some(id)) = made.await else {
                    break;
                };
                told.created.push(id.clone());
                let words: Vec<String> = ["approve", "--id", &id].map(String::from).to_vec();
                match connection.run(&words, &[]).await {
                    Ok(out) if out.exit_status == 0 => {
                        told.approved.insert(id);
                    }
                    _ => break,
                }
            }
            told
        })
    };
    let clients = runtime.block_on(async {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (config, key, stop) = (config.clone(), key.to_owned(), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut signed = Vec::new();
                    let Ok(connection) = sshsign::client::Connection::connect(&config).await else {
                        return (signed, 1);
                    };
                    let words: Vec<String> = ["sign", "--key-id", &key].map(String::from).to_vec();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let payload =
                            format!("cycle {cycle} client {client} signature {n}").into_bytes();
                        n += 1;
                        match connection.run(&words, &payload).await {
                            Ok(out) if out.exit_status == 0 => {
                                let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
                                let signature = reply["signature"].as_str().unwrap().to_owned();
                                signed.push((payload, signature));
                            }
                            _ => return (signed, 1),
                        }
                    }
                    (signed, 0)
                })
            })
            .collect();
        // Let the clients sign for a moment; then the plug is pulled mid-flight.
        tokio::time::sleep(std::time::Duration::from_millis(
            60 + (cycle as u64 % 5) * 20,
        ))
        .await;
        clients
    });
    appliance.kill_hard();
    stop.store(true, Ordering::Relaxed);
    let told = runtime.block_on(approver).unwrap();
    approvals.created.extend(told.created);
    approvals.approved.extend(told.approved);
    runtime.block_on(async {
        let mut received = Vec::new();
        let mut cut_short = 0;
        for client in clients {
            let (signed, errors) = client.await.unwrap();
            received.extend(signed);
            cut_short += errors;
        }
        (received, cut_short)
    })
}

/// The payload digests of every signature the audit log records, read page by page.
fn signed_digests(alice: &User) -> HashSet<String> {
    let mut logged = HashSet::new();
    let mut from = 0;
    loop {
        let page = alice.cmd(&format!("audit-entries --from {from} --limit 1000"));
        for item in page.ok()["entries"].as_array().unwrap() {
            if item["entry"]["action"] == "sign" && item["entry"]["result"] == "signed" {
                logged.insert(item["entry"]["payload_sha512"].as_str().unwrap().to_owned());
            }
        }
        match page.json["next"].as_u64() {
            Some(next) => from = next,
            None => return logged,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_kept_in_sled_moves_into_tiles_and_every_saved_proof_still_verifies() {
    use sshsign::audit::legacy::LogTree;
    use sshsign::audit::merkle::{self, Frontier};
    use sshsign::audit::{AuditEntry, AuditLog, CheckpointSigner};

    let (hsm, _token_store) = crate::common::in_process_token(1);
    sshsign::provision::generate_appliance_keys(&hsm).unwrap();
    let checkpoint_key = sshsign::provision::appliance_keys(&hsm)
        .unwrap()
        .into_iter()
        .find(|k| k.role == sshsign::provision::KeyRole::Checkpoint)
        .unwrap();
    let token = sshsign::hsm::Token::new(Arc::new(hsm)).unwrap();
    let signer =
        || CheckpointSigner::new(token.clone(), std::slice::from_ref(&checkpoint_key)).unwrap();
    let entries: Vec<Vec<u8>> = (0..700u64)
        .map(|n| {
            AuditEntry {
                time: n as i64,
                action: sshsign::audit::Action::Sign,
                result: sshsign::audit::Outcome::Signed,
                actor: format!("usr_{n}"),
                readers: vec![format!("usr_{n}")],
                ..Default::default()
            }
            .to_bytes()
            .unwrap()
        })
        .collect();

    // What a checkpoint over these entries says, signed by the checkpoint key (the note
    // depends only on the origin, the size and the root).
    let scratch = tempfile::tempdir().unwrap();
    let scratch_db = sled::open(scratch.path().join("db")).unwrap();
    let reference = AuditLog::open(
        &scratch.path().join("tlog"),
        Some(&scratch_db),
        signer(),
        1 << 20,
    )
    .unwrap();
    for entry in &entries[..500] {
        reference
            .append(&serde_json::from_slice(entry).unwrap())
            .await
            .unwrap();
    }
    let (at_500, note_500) = reference.checkpoint().await.unwrap();
    for entry in &entries[500..] {
        reference
            .append(&serde_json::from_slice(entry).unwrap())
            .await
            .unwrap();
    }
    let (at_700, note_700) = reference.checkpoint().await.unwrap();
    let saved_proof = reference.inclusion(123, Some(500)).await.unwrap();

    // The log as versions before the tiles kept it: entries, subtree hashes and checkpoints
    // in sled.
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let old = LogTree::open(&db).unwrap();
    let mut frontier = Frontier::default();
    old.write(0, &entries[..500], &mut frontier).unwrap();
    old.write_checkpoint(500, &note_500).unwrap();
    old.write(500, &entries[500..], &mut frontier).unwrap();
    old.write_checkpoint(700, &note_700).unwrap();
    drop(old);

    let tlog = dir.path().join("db.tlog");
    let log = AuditLog::open(&tlog, Some(&db), signer(), 1 << 20).unwrap();
    assert_eq!(log.head().size, 700);
    assert_eq!(log.head().root, at_700.root);
    assert!(
        !db.tree_names().iter().any(|n| n.as_ref() == b"audit"),
        "the sled log is dropped once moved"
    );
    // Both checkpoints came along: proofs against each verify under the signed roots.
    for (checkpoint, note) in [(&at_500, &note_500), (&at_700, &note_700)] {
        let proof = log.inclusion(123, Some(checkpoint.size)).await.unwrap();
        assert_eq!(&proof.checkpoint, note);
        let hashes: Vec<Vec<u8>> = proof
            .proof
            .iter()
            .map(|p| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, p).unwrap())
            .collect();
        let leaf = merkle::leaf_hash(proof.entry.as_bytes());
        merkle::verify_inclusion(123, checkpoint.size, &leaf, &hashes, &checkpoint.root).unwrap();
    }
    // A proof a client saved before the move is the one the tiles give now.
    assert_eq!(
        log.inclusion(123, Some(500)).await.unwrap().proof,
        saved_proof.proof
    );
    let consistency = log.consistency(500, Some(700)).await.unwrap();
    let hashes: Vec<Vec<u8>> = consistency
        .proof
        .iter()
        .map(|p| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, p).unwrap())
        .collect();
    merkle::verify_consistency(500, 700, &hashes, &at_500.root, &at_700.root).unwrap();
    let log = Arc::new(log);
    log.check_in_background().unwrap();
    for _ in 0..200 {
        if log.integrity().state == sshsign::audit::CheckState::Verified {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        log.integrity().state,
        sshsign::audit::CheckState::Verified,
        "{:?}",
        log.integrity()
    );
    drop(log);

    // Opened again, nothing moves twice.
    let log = AuditLog::open(&tlog, Some(&db), signer(), 1 << 20).unwrap();
    assert_eq!(log.head().root, at_700.root);
    log.append(&AuditEntry::default()).await.unwrap();
    assert_eq!(log.head().size, 701);
}

#[test]
fn the_log_is_served_as_tlog_tiles_that_reveal_no_entry() {
    use sshsign::audit::merkle::Frontier;
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    alice.create_key("--scope release");
    alice.create_key("");
    let signed = alice.cmd("audit-checkpoint");
    let note = signed.ok()["checkpoint"].as_str().unwrap().to_owned();

    let served = appliance.http("GET", "/audit/checkpoint", &[], b"");
    assert_eq!(served.status, 200);
    assert_eq!(String::from_utf8(served.body).unwrap(), note);
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    let root = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        note.lines().nth(2).unwrap(),
    )
    .unwrap();
    assert!((2..256).contains(&size), "{size}");

    // The level-0 tile at the checkpoint's width hashes to the signed root.
    let hashes = appliance.http("GET", &format!("/audit/tile/0/000.p/{size}"), &[], b"");
    assert_eq!(hashes.status, 200);
    let cache = hashes
        .headers
        .iter()
        .find(|(name, _)| name == "cache-control")
        .map(|(_, value)| value.clone());
    assert_eq!(
        cache.as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(hashes.body.len() as u64, size * 32);
    let mut frontier = Frontier::default();
    for leaf in hashes.body.chunks_exact(32) {
        frontier.push(leaf.try_into().unwrap(), |_, _, _| {});
    }
    assert_eq!(frontier.root().to_vec(), root);

    // The entry bundle: each entry's leaf hash and action, and nothing about anyone.
    let bundle = appliance.http(
        "GET",
        &format!("/audit/tile/entries/000.p/{size}"),
        &[],
        b"",
    );
    assert_eq!(bundle.status, 200);
    let entries = sshsign::audit::tiles::bundle_entries(&bundle.body).unwrap();
    assert_eq!(entries.len() as u64, size);
    let alice_id = alice.cmd("whoami").ok()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (entry, leaf) in entries.iter().zip(hashes.body.chunks_exact(32)) {
        let public: Value = serde_json::from_slice(entry).unwrap();
        assert_eq!(public["leaf_hash"], sshsign::hex::encode(leaf), "{public}");
        assert!(public["action"].is_string(), "{public}");
        assert_eq!(public.as_object().unwrap().len(), 2, "{public}");
    }
    let text = String::from_utf8_lossy(&bundle.body);
    for secret in [alice_id.as_str(), "release", "SHA256:", "ak_"] {
        assert!(!text.contains(secret), "the bundle shows {secret}: {text}");
    }
    assert!(
        entries
            .iter()
            .any(|e| String::from_utf8_lossy(e).contains("\"create_key\"")),
        "{text}"
    );

    // Paths the specification does not name, or past the log, are not found.
    for path in [
        format!("/audit/tile/0/000.p/{}", size + 300),
        "/audit/tile/0/0000".to_owned(),
        "/audit/tile/0/000".to_owned(),
        "/audit/tile/entries/001".to_owned(),
        "/audit/tile/9/000".to_owned(),
        "/audit/tile/../head".to_owned(),
        format!("/audit/tile/0/{}", "x123/".repeat(20)),
    ] {
        let reply = appliance.http("GET", &path, &[], b"");
        assert_eq!(reply.status, 404, "{path}: {}", reply.status);
    }
}

/// Go's checksum-database client code (`golang.org/x/mod/sumdb/note` and `tlog`, Debian's
/// `golang-golang-x-mod-dev`) reads the served log: the checkpoint verifies under the
/// appliance's verifier key, and the tiles hash to its root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gos_tlog_client_reads_the_served_tiles_and_gets_the_signed_root() {
    let InProcess { core, .. } = in_process();
    // Past 65,536 entries: full tiles at levels 0 and 1, partial ones at 0, 1 and 2.
    const ENTRIES: u64 = 66_000;
    let mut appended = 0;
    while appended < ENTRIES {
        let wave: Vec<_> = (appended..(appended + 4096).min(ENTRIES))
            .map(|n| {
                let core = Arc::clone(&core);
                tokio::spawn(async move {
                    let entry = sshsign::audit::AuditEntry {
                        time: n as i64,
                        actor: format!("usr_{n}"),
                        ..Default::default()
                    };
                    core.audit().append(&entry).await.unwrap()
                })
            })
            .collect();
        for task in wave {
            task.await.unwrap();
        }
        appended = (appended + 4096).min(ENTRIES);
    }
    let (checkpoint, _) = core.audit_checkpoint().await.unwrap();
    assert_eq!(checkpoint.size, ENTRIES);

    // A caller with no entry in this long log gets bounded scans: an empty page and where to go
    // on from, never a walk over the whole log in one call.
    let stranger = crate::in_process::caller(&core, 9).await;
    let (mine, next) = core.audit_entries(&stranger, 0, 10).unwrap();
    assert!(mine.is_empty());
    assert_eq!(next, Some(50_000));
    let (mine, next) = core.audit_entries(&stranger, 50_000, 10).unwrap();
    assert!(mine.is_empty() && next.is_none(), "{next:?}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/audit", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sshsign::web::serve::serve(
        listener,
        None,
        crate::in_process::router(&core),
        std::time::Duration::from_secs(10),
        Vec::new(),
        async {
            let _ = stopped.await;
        },
    ));

    let vkey = core.audit_verifier_key();
    let wrong_key = sshsign::audit::note::verifier_key("test-log", &[7; 32]);
    let (ours, wrong) = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("verify_tiles");
        let built = std::process::Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/tlog/verify_tiles.go"
            ))
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .env("GOCACHE", dir.path().join("cache"))
            .env("GOFLAGS", "")
            .output()
            .expect("go is installed (golang-go, golang-golang-x-mod-dev)");
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let run = |key: &str| {
            std::process::Command::new(&binary)
                .args([&base, key])
                .output()
                .unwrap()
        };
        (run(&vkey), run(&wrong_key))
    })
    .await
    .unwrap();
    let _ = stop.send(());
    let _ = server.await;

    let stdout = String::from_utf8_lossy(&ours.stdout);
    assert!(
        ours.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let root = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, checkpoint.root);
    assert_eq!(stdout.trim(), format!("ok {ENTRIES} {root}"));
    assert!(
        !wrong.status.success(),
        "a checkpoint under another key is refused"
    );
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("checkpoint signature"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
}

/// `sshsign audit check|prove --tiles`, and what it printed.
fn from_tiles(user: &User, state: &Path, args: &[&str]) -> (Output, Value) {
    let output = shim(user, state, args);
    let report = serde_json::from_slice(&output.stdout).unwrap_or_default();
    (output, report)
}

/// `sshsign audit prove --index INDEX --tiles SOURCE`, and what it printed.
fn prove_from_tiles(user: &User, state: &Path, index: u64, source: &str) -> (Output, Value) {
    let index = index.to_string();
    from_tiles(
        user,
        state,
        &["audit", "prove", "--index", &index, "--tiles", source],
    )
}

#[test]
fn the_client_checks_the_log_from_its_served_tiles_and_from_a_copy() {
    // Past one tile of entries takes 300 signatures in a moment: more than one identity's quota.
    let mut appliance = Appliance::start_with(&[("SSHSIGN_QUOTAS", "signatures=100000/min")]);
    let alice = appliance.user("alice");
    let state = appliance.dir.path().join("state");
    let key = alice.create_key("");
    let vkey = alice.cmd("audit-checkpoint").ok()["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("http://{}/audit", appliance.http_addr);

    // Over HTTP there is no key to pin at first use: it must be given.
    let (refused, _) = from_tiles(&alice, &state, &["audit", "check", "--tiles", &url]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--key"), "{}", stderr(&refused));
    let (first, report) = from_tiles(
        &alice,
        &state,
        &["audit", "check", "--tiles", &url, "--key", &vkey],
    );
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(report["previously_seen"], 0, "{report}");
    let first_size = report["size"].as_u64().unwrap();

    // Past one tile: 300 signatures, then a checkpoint over them.
    let config = appliance.client_config(&alice);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let connection = sshsign::client::Connection::connect(&config).await.unwrap();
        let words: Vec<String> = ["sign", "--key-id", &key].map(String::from).to_vec();
        for n in 0..300u32 {
            let signed = connection.run(&words, &n.to_be_bytes()).await.unwrap();
            assert_eq!(signed.exit_status, 0);
        }
        connection.close().await;
    });
    let signed_note = alice.cmd("audit-checkpoint").ok()["checkpoint"].clone();

    // The key is pinned now; the new checkpoint is proven to extend the one seen, from tiles.
    let (grown, report) = from_tiles(&alice, &state, &["audit", "check", "--tiles", &url]);
    assert!(grown.status.success(), "{}", stderr(&grown));
    assert_eq!(report["previously_seen"], first_size, "{report}");
    let size = report["size"].as_u64().unwrap();
    assert!(size >= first_size + 300, "{report}");
    assert_eq!(
        Some(size),
        signed_note
            .as_str()
            .and_then(|n| n.lines().nth(1)?.parse().ok())
    );

    // One entry, proven from tiles: its public form names the leaf that SSH's proof has.
    let index = first_size + 150;
    let (proved, report) = prove_from_tiles(&alice, &state, index, &url);
    assert!(proved.status.success(), "{}", stderr(&proved));
    let over_ssh = alice.cmd(&format!("audit-proof --index {index}"));
    let over_ssh = over_ssh.ok();
    let leaf = sshsign::audit::merkle::leaf_hash(over_ssh["entry"].as_str().unwrap().as_bytes());
    assert_eq!(
        report["public_entry"],
        serde_json::json!({ "action": "sign", "leaf_hash": sshsign::hex::encode(&leaf) }),
        "{report}"
    );
    let (past, _) = prove_from_tiles(&alice, &state, size + 5, &url);
    assert!(!past.status.success());

    // A copy of the log's directory checks the same way, once the appliance has stopped.
    appliance.stop();
    let copy = appliance.dir.path().join("tlog-copy");
    appliance.copy_of_log(&vkey, &copy);
    let copy_text = copy.to_str().unwrap();
    let (offline, report) = from_tiles(&alice, &state, &["audit", "check", "--tiles", copy_text]);
    assert!(offline.status.success(), "{}", stderr(&offline));
    assert_eq!(report["size"], size, "{report}");
    let (offline_proof, _) = prove_from_tiles(&alice, &state, index, copy_text);
    assert!(offline_proof.status.success(), "{}", stderr(&offline_proof));

    // One leaf hash changed in a full tile: the entry's inclusion proof no longer leads to the
    // signed root.
    let tile = copy.join("tile/0/000");
    let mut bytes = std::fs::read(&tile).unwrap();
    bytes[(index as usize) * 32] ^= 1;
    std::fs::write(&tile, bytes).unwrap();
    let (tampered, _) = prove_from_tiles(&alice, &state, index, copy_text);
    assert!(!tampered.status.success());
    assert!(
        stderr(&tampered).contains("does not lead to the root"),
        "{}",
        stderr(&tampered)
    );
    // One hash changed on the right edge, which the root is computed from: the check fails.
    let edge = std::fs::read_dir(copy.join("tile/0/001.p"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&edge).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&edge, bytes).unwrap();
    let (tampered, _) = from_tiles(&alice, &state, &["audit", "check", "--tiles", copy_text]);
    assert!(!tampered.status.success());
    assert!(
        stderr(&tampered).contains("do not hash to the root"),
        "{}",
        stderr(&tampered)
    );
}

#[test]
fn rotated_keys_take_over_and_what_the_old_ones_signed_still_verifies() {
    use crate::approvals::{api_key, decided_over_ssh};
    use crate::common::{offline_check, provisioned};

    let mut appliance = Appliance::start();
    let alice = appliance.user("alice");
    let state = appliance.dir.path().join("state");
    let api = api_key(&alice, "approval:create,approval:read");
    let (first_id, first) = decided_over_ssh(&appliance, &alice, &api, "deploy");
    // The client pins the first checkpoint key.
    let pinned = shim(&alice, &state, &["audit", "check"]);
    assert!(pinned.status.success(), "{}", stderr(&pinned));
    let (_, before) = appliance.http_get("/api/v1/appliance");

    // Both keys rotate; the appliance picks the new ones up at its next start.
    let audit_dir = appliance.dir.path().join("db.tlog");
    let env_audit = [("SSHSIGN_AUDIT_PATH", audit_dir.to_str().unwrap())];
    for role in ["decision", "checkpoint"] {
        let rotated = provisioned(&appliance.store, &env_audit, &["rotate", "--role", role]);
        assert_eq!(rotated["rotated"]["generation"], 2, "{rotated}");
        assert_eq!(rotated["rotated"]["label"], format!("sshsign-{role}.2"));
    }
    assert!(audit_dir.join("handovers/2.note").is_file());
    appliance.restart();
    let alice = alice.at(&appliance);
    // At once, before anything else is logged, the latest checkpoint is the new key's: the log
    // took an entry for the handover.
    let latest = alice.cmd("audit-checkpoint").ok().clone();
    let signed_by_new = note::verify(
        latest["checkpoint"].as_str().unwrap(),
        latest["verifier_key"].as_str().unwrap(),
    );
    assert!(signed_by_new.is_ok(), "{latest}");
    let (_, after) = appliance.http_get("/api/v1/appliance");
    let keys = after["keys"].as_array().unwrap();
    let state_of = |role: &str, generation: u64| {
        keys.iter()
            .find(|k| k["role"] == role && k["generation"] == generation)
            .map(|k| k["state"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        state_of("decision", 1).as_deref(),
        Some("previous"),
        "{after}"
    );
    assert_eq!(
        state_of("decision", 2).as_deref(),
        Some("active"),
        "{after}"
    );
    assert_eq!(
        state_of("checkpoint", 2).as_deref(),
        Some("active"),
        "{after}"
    );
    assert_ne!(after["keys"], before["keys"]);

    // New decisions carry the new kid; the JWKS has both; the old decision still verifies.
    let (second_id, second) = decided_over_ssh(&appliance, &alice, &api, "deploy");
    assert_ne!(
        first.json["decision"]["key_id"], second.json["decision"]["key_id"],
        "{:?}",
        second.json
    );
    let (_, jwks) = appliance.http_get("/.well-known/jwks.json");
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    let dir = tempfile::tempdir().unwrap();
    let jwks_file = appliance.save_jwks(dir.path());
    for (id, decided) in [(&first_id, &first), (&second_id, &second)] {
        let file = write_file(dir.path(), "decision.json", decided.body.clone());
        let out = offline_check("verify-approval", &jwks_file, &["--request-id", id], &file);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    // The client that pinned the first checkpoint key follows the handover to the second.
    let followed = shim(&alice, &state, &["audit", "check"]);
    assert!(followed.status.success(), "{}", stderr(&followed));
    let report: Value = serde_json::from_slice(&followed.stdout).unwrap();
    assert!(report["previously_seen"].as_u64().unwrap() > 0, "{report}");
    let checkpoint = alice.cmd("audit-checkpoint").ok().clone();
    assert_eq!(
        checkpoint["handovers"].as_array().map(Vec::len),
        Some(1),
        "{checkpoint}"
    );
    let origin_before = checkpoint["origin"].clone();

    // Retiring the first decision key: it signs nothing more, stays published.
    let active = crate::common::provision_with(
        &appliance.store,
        &env_audit,
        &["retire", "--role", "decision", "--generation", "2"],
    );
    assert!(!active.status.success());
    assert!(
        stderr(&active).contains("rotate first"),
        "{}",
        stderr(&active)
    );
    appliance.stop();
    for role in ["decision", "checkpoint"] {
        let retired = provisioned(
            &appliance.store,
            &env_audit,
            &["retire", "--role", role, "--generation", "1"],
        );
        assert_eq!(retired["retired"]["state"], "retired");
    }
    appliance.restart();
    let alice = alice.at(&appliance);
    let (_, after) = appliance.http_get("/api/v1/appliance");
    assert!(
        after["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["role"] == "decision" && k["generation"] == 1 && k["state"] == "retired"),
        "{after}"
    );
    let jwks_file = appliance.save_jwks(dir.path());
    let file = write_file(dir.path(), "first.json", first.body.clone());
    let out = offline_check(
        "verify-approval",
        &jwks_file,
        &["--request-id", &first_id],
        &file,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The log keeps its name, and a client that never saw the second key still follows.
    let checkpoint = alice.cmd("audit-checkpoint").ok().clone();
    assert_eq!(checkpoint["origin"], origin_before);
    let fresh_state = appliance.dir.path().join("state-2");
    let first_vkey = note::verifier_key(
        origin_before.as_str().unwrap(),
        &first_checkpoint_key(&before),
    );
    let late = shim_with_key(&alice, &fresh_state, &first_vkey);
    assert!(late.status.success(), "{}", stderr(&late));
    // Through the served tiles too, and from a copy of the log's directory: the handovers are
    // served beside them, as the directory keeps them.
    let url = format!("http://{}/audit", appliance.http_addr);
    let (tiled, report) = from_tiles(
        &alice,
        &appliance.dir.path().join("state-3"),
        &["audit", "check", "--tiles", &url, "--key", &first_vkey],
    );
    assert!(tiled.status.success(), "{}", stderr(&tiled));
    assert!(report["size"].as_u64().unwrap() > 0, "{report}");
    let (status, _) = appliance.http_get("/audit/handovers/3.note");
    assert_eq!(status, 404);
    let active_vkey = checkpoint["verifier_key"].as_str().unwrap().to_owned();
    appliance.stop();
    let copy = appliance.dir.path().join("tlog-copy");
    appliance.copy_of_log(&active_vkey, &copy);
    let (copied, _) = from_tiles(
        &alice,
        &appliance.dir.path().join("state-4"),
        &[
            "audit",
            "check",
            "--tiles",
            copy.to_str().unwrap(),
            "--key",
            &first_vkey,
        ],
    );
    assert!(copied.status.success(), "{}", stderr(&copied));
}

/// The first checkpoint key's public key, from `/api/v1/appliance`.
fn first_checkpoint_key(appliance_keys: &Value) -> [u8; 32] {
    let openssh = appliance_keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "checkpoint")
        .unwrap()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = ssh_key::PublicKey::from_openssh(&openssh).unwrap();
    key.key_data().ed25519().unwrap().0
}

/// `sshsign audit check --key VKEY` with fresh client state.
fn shim_with_key(user: &User, state: &Path, vkey: &str) -> Output {
    shim(user, state, &["audit", "check", "--key", vkey])
}
