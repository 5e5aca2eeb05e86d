//! Several appliances sharing one PostgreSQL database. Here both use one SoftHSMv2 token
//! directory, which stands for tokens holding the same keys (restored from one backup).

use serde_json::json;

use crate::approvals::user_id;
use crate::audit::shim;
use crate::common::{Appliance, ssh_keygen_verify};

/// `env`, with the appliance's name in its group.
fn named<'a>(env: &[(&'a str, &'a str)], name: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut env = env.to_vec();
    env.push(("SSHSIGN_APPLIANCE_NAME", name));
    env
}

#[test]
fn two_appliances_on_one_database_serve_the_same_people_keys_and_requests() {
    let cluster = sshsign::pgcluster::Cluster::start().unwrap();
    let url = cluster.create_database("sshsign").unwrap();
    let env = [
        ("SSHSIGN_DATABASE_URL", url.as_str()),
        ("SSHSIGN_QUOTAS", "signatures=4/h"),
    ];
    let a = Appliance::start_with(&named(&env, "a"));
    let b = Appliance::start_in(
        tempfile::tempdir().unwrap(),
        a.store.clone(),
        &[],
        &named(&env, "b"),
    );

    // One identity, whichever appliance a key first reached.
    let alice = a.user("alice");
    let alice_b = alice.at(&b);
    let bob_b = b.user("bob");
    let bob = bob_b.at(&a);
    assert_eq!(user_id(&alice), user_id(&alice_b));
    assert_eq!(user_id(&bob), user_id(&bob_b));

    // A key made through one appliance signs through the other; stock OpenSSH verifies it.
    let key_id = alice.create_key("");
    let public_key = alice_b.cmd("keys").ok()["keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let payload = b"made on a, signed on b\n";
    let signed = alice_b.run(&format!("sign --type git --key-id {key_id}"), payload);
    let signature = signed.ok()["signature"].as_str().unwrap().to_owned();
    let verified = ssh_keygen_verify(
        b.dir.path(),
        "alice@example.com",
        &public_key,
        "git",
        &signature,
        payload,
    );
    assert!(verified.status.success(), "{verified:?}");

    // The rates are shared: four signatures an hour, wherever they are asked for.
    alice.run(&format!("sign --key-id {key_id}"), b"2").ok();
    alice_b.run(&format!("sign --key-id {key_id}"), b"3").ok();
    alice.run(&format!("sign --key-id {key_id}"), b"4").ok();
    for user in [&alice, &alice_b] {
        user.run(&format!("sign --key-id {key_id}"), b"5")
            .failed_with("quota_exceeded");
    }

    // An approval asked through one appliance is decided through the other, once.
    bob.accept(&alice);
    let bob_id = user_id(&bob);
    let asked = alice
        .cmd(&format!(
            r#"request-approval --action "Deploy" --approver {bob_id} --method ssh --ttl 15m"#
        ))
        .ok()
        .clone();
    let id = asked["id"].as_str().unwrap().to_owned();
    assert_eq!(bob_b.cmd("pending").ok()["approvals"][0]["id"], id.as_str());
    let racers: Vec<_> = [bob.clone(), bob_b.clone()]
        .into_iter()
        .map(|bob| {
            let id = id.clone();
            std::thread::spawn(move || bob.cmd(&format!("approve --id {id}")).status)
        })
        .collect();
    let codes: Vec<i32> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    assert_eq!(
        codes.iter().filter(|code| **code == 0).count(),
        1,
        "decided once: {codes:?}"
    );
    for user in [&alice, &alice_b] {
        let decided = user.cmd(&format!("get-envelope --id {id}")).ok().clone();
        assert_eq!(decided["status"], "approved", "{decided}");
        assert_eq!(decided["votes"].as_array().unwrap().len(), 1, "{decided}");
        assert_eq!(decided["votes"][0]["approver"], json!(bob_id), "{decided}");
    }
    // The page of a request made through one appliance is served by the other.
    assert_eq!(
        b.http("GET", &format!("/approve/{id}"), &[], b"").status,
        200
    );

    // One audit log: both list the same entries under the same indexes, the signature made
    // through b among them, and each proves entries the other wrote.
    let entries = |user: &crate::common::User| {
        user.cmd("audit-entries").ok()["entries"]
            .as_array()
            .unwrap()
            .clone()
    };
    // The decision's own entry may land between the two reads.
    let (listed, listed_b) = (entries(&alice), entries(&alice_b));
    assert!(listed.len() >= 9, "{listed:?}");
    assert_eq!(listed[..], listed_b[..listed.len()]);
    let signs: Vec<u64> = listed
        .iter()
        .filter(|e| e["entry"]["action"] == "sign" && e["entry"]["result"] == "signed")
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(signs.len(), 4, "{listed:?}");
    // The race above: one vote stored, and one vote logged (the loser waited on the request's
    // lease, then found it decided).
    let votes = listed
        .iter()
        .filter(|e| {
            e["entry"]["action"] == "approval_vote" && e["entry"]["request_id"] == id.as_str()
        })
        .count();
    assert_eq!(votes, 1, "{listed:?}");
    for index in &signs {
        for user in [&alice, &alice_b] {
            user.cmd(&format!("audit-proof --index {index}")).ok();
        }
    }
    // The client checks the log through a, then through b: b's checkpoint is proven to extend
    // the one a signed (one tree, not two logs under one key), and the other way round.
    let state = a.dir.path().join("audit-state");
    for (user, more) in [(&alice, &bob), (&alice_b, &bob_b), (&alice, &bob)] {
        more.create_key("");
        let checked = shim(user, &state, &["audit", "check"]);
        assert!(
            checked.status.success(),
            "{}",
            String::from_utf8_lossy(&checked.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
        assert!(
            report["size"].as_u64() > report["previously_seen"].as_u64().or(Some(0)),
            "{report}"
        );
    }
    // Their served tiles are the same bytes.
    let checkpoint = a.http("GET", "/audit/checkpoint", &[], b"");
    let size: u64 = String::from_utf8_lossy(&checkpoint.body)
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let tile = format!("/audit/tile/0/000.p/{size}");
    let (from_a, from_b) = (
        a.http("GET", &tile, &[], b""),
        b.http("GET", &tile, &[], b""),
    );
    assert_eq!((from_a.status, from_b.status), (200, 200));
    assert_eq!(from_a.body, from_b.body);
    assert_eq!(from_a.body.len() as u64, size * 32);
}

/// What the clients of the failover test were given.
#[derive(Default)]
struct Received {
    /// Payloads and the signatures returned for them.
    signatures: Vec<(String, String)>,
    /// Approval requests asked, and whether the approver's `approve` returned success.
    approvals: Vec<(String, bool)>,
    /// Signatures made while `b` was down for good.
    after_last_kill: usize,
}

#[test]
fn an_appliance_killed_at_random_loses_nothing_a_client_was_given() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime};

    use sha2::{Digest as _, Sha512};

    let cluster = sshsign::pgcluster::Cluster::start().unwrap();
    let url = cluster.create_database("sshsign").unwrap();
    let env = [
        ("SSHSIGN_DATABASE_URL", url.as_str()),
        ("SSHSIGN_QUOTAS", "signatures=100000/min"),
    ];
    let a = Appliance::start_with(&named(&env, "a"));
    let mut b = Appliance::start_in(
        tempfile::tempdir().unwrap(),
        a.store.clone(),
        &[],
        &named(&env, "b"),
    );
    let alice = a.user("alice");
    let bob = a.user("bob");
    bob.accept(&alice);
    let bob_id = user_id(&bob);
    let key_id = alice.create_key("");
    let public_key = alice.cmd("keys").ok()["keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let vkey = alice.cmd("audit-checkpoint").ok()["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();

    // Clients go through both appliances, whichever is up; `b` is killed and started again.
    let reach = Arc::new(Mutex::new([alice.at(&a), alice.at(&b)]));
    let reach_bob = Arc::new(Mutex::new([bob.at(&a), bob.at(&b)]));
    let received = Arc::new(Mutex::new(Received::default()));
    let (stop, b_gone) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let signers: Vec<_> = (0..2)
        .map(|thread| {
            let (reach, received, stop, b_gone) = (
                Arc::clone(&reach),
                Arc::clone(&received),
                Arc::clone(&stop),
                Arc::clone(&b_gone),
            );
            let key_id = key_id.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let user = reach.lock().unwrap()[n % 2].clone();
                    let payload = format!("thread {thread}, signature {n}\n");
                    let signed = user.run(
                        &format!("sign --type git --key-id {key_id}"),
                        payload.as_bytes(),
                    );
                    if signed.status == 0 {
                        let signature = signed.json["signature"].as_str().unwrap().to_owned();
                        let mut received = received.lock().unwrap();
                        received.signatures.push((payload, signature));
                        if b_gone.load(Ordering::SeqCst) {
                            received.after_last_kill += 1;
                        }
                    }
                }
            })
        })
        .collect();
    let approvals = {
        let (reach, reach_bob, received, stop) = (
            Arc::clone(&reach),
            Arc::clone(&reach_bob),
            Arc::clone(&received),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let alice = reach.lock().unwrap()[0].clone();
                let asked = alice.cmd(&format!(
                    r#"request-approval --action "Deploy {n}" --approver {bob_id} --method ssh --ttl 15m"#
                ));
                let Some(id) = asked.json["id"].as_str().map(str::to_owned) else {
                    continue;
                };
                let bob = reach_bob.lock().unwrap()[n % 2].clone();
                let approved = bob.cmd(&format!("approve --id {id}")).status == 0;
                received.lock().unwrap().approvals.push((id, approved));
            }
        })
    };

    // Three kills at random moments (the clock's nanoseconds choose), each followed by a start.
    let mut random = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mut pause = || {
        random = random.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        Duration::from_millis(300 + u64::from(random % 1200))
    };
    for _ in 0..3 {
        std::thread::sleep(pause());
        b.kill();
        std::thread::sleep(pause() / 2);
        b.restart();
        reach.lock().unwrap()[1] = alice.at(&b);
        reach_bob.lock().unwrap()[1] = bob.at(&b);
    }
    // And a last one, for good: the survivor serves everyone.
    std::thread::sleep(pause());
    b.kill();
    b_gone.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    for thread in signers {
        thread.join().unwrap();
    }
    approvals.join().unwrap();
    let received = std::mem::take(&mut *received.lock().unwrap());
    assert!(
        received.signatures.len() >= 20,
        "{}",
        received.signatures.len()
    );
    assert!(received.after_last_kill > 0, "the survivor signed nothing");

    // Every signature a client was given verifies, and has its entry in the one log.
    let mut logged = std::collections::HashSet::new();
    let mut votes_logged = std::collections::HashMap::<String, usize>::new();
    let mut from = 0;
    loop {
        let page = alice.cmd(&format!("audit-entries --from {from} --limit 1000"));
        let page = page.ok();
        for e in page["entries"].as_array().unwrap() {
            let entry = &e["entry"];
            if entry["action"] == "sign" && entry["result"] == "signed" {
                logged.insert(entry["payload_sha512"].as_str().unwrap().to_owned());
            }
            if entry["action"] == "approval_vote" {
                let id = entry["request_id"].as_str().unwrap().to_owned();
                *votes_logged.entry(id).or_default() += 1;
            }
        }
        match page["next"].as_u64() {
            Some(next) => from = next,
            None => break,
        }
    }
    for (payload, signature) in &received.signatures {
        let verified = ssh_keygen_verify(
            a.dir.path(),
            "alice@example.com",
            &public_key,
            "git",
            signature,
            payload.as_bytes(),
        );
        assert!(verified.status.success(), "{payload}: {verified:?}");
        let digest = sshsign::hex::encode(&Sha512::digest(payload.as_bytes()));
        assert!(logged.contains(&digest), "{payload} has no entry");
    }

    // Every request is decided once: one vote stored, and one logged, for each approved.
    let mut approved = 0;
    for (id, said_approved) in &received.approvals {
        let state = alice.cmd(&format!("get-envelope --id {id}"));
        let state = state.ok();
        let votes = state["votes"].as_array().unwrap().len();
        assert!(votes <= 1, "{state}");
        if *said_approved {
            assert_eq!(state["status"], "approved", "{state}");
            assert_eq!(votes, 1, "{state}");
            assert_eq!(votes_logged.get(id), Some(&1), "{id}");
            approved += 1;
        }
    }
    assert!(approved > 0, "no approval went through");

    // The log verifies, entry by entry, and the client sees one consistent log.
    let checked = shim(
        &alice,
        &a.dir.path().join("audit-state"),
        &["audit", "check"],
    );
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let full = a.server_command(&["audit", "verify", "--full", "--key", &vkey]);
    assert!(
        full.status.success(),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
}

#[test]
fn a_key_made_after_a_token_was_restored_elsewhere_is_refused_plainly_there() {
    let cluster = sshsign::pgcluster::Cluster::start().unwrap();
    let url = cluster.create_database("sshsign").unwrap();
    let env = [("SSHSIGN_DATABASE_URL", url.as_str())];
    let a = Appliance::start_with(&named(&env, "a"));
    let alice = a.user("alice");
    let before = alice.create_key("");

    // b's token: a copy of a's token as it stands now, which is what restoring the group's
    // backup gives; a key made through a afterwards is on a's token alone.
    let copied = tempfile::tempdir().unwrap();
    crate::common::copy_dir(&a.store.dir, copied.path());
    let conf = std::fs::read_to_string(a.store.conf()).unwrap().replace(
        a.store.dir.to_str().unwrap(),
        copied.path().to_str().unwrap(),
    );
    std::fs::write(
        copied.path().join(a.store.conf().file_name().unwrap()),
        conf,
    )
    .unwrap();
    let token = sshsign::softhsm::SoftHsmStore {
        dir: copied.path().to_owned(),
        ..a.store.clone()
    };
    let b = Appliance::start_in(tempfile::tempdir().unwrap(), token, &[], &named(&env, "b"));
    let after = alice.create_key("");
    let alice_b = alice.at(&b);

    alice_b.run(&format!("sign --key-id {before}"), b"old").ok();
    let refused = alice_b.run(&format!("sign --key-id {after}"), b"new");
    let message = refused.failed_with("key_not_on_token");
    assert!(message.contains("another appliance"), "{message}");
    // Where it was made it signs, and b goes on.
    alice.run(&format!("sign --key-id {after}"), b"new").ok();
    alice_b.cmd("whoami").ok();
}

#[test]
fn appliances_restored_from_one_backup_cosign_as_themselves_and_carry_keys_made_later() {
    use crate::common::{kryoptic_store, provisioned, token_keys};
    // kryoptic, whose keys may leave wrapped: the one token here that wraps Ed25519 keys.
    let wrapped = [
        ("SSHSIGN_HSM_PROFILE", "kryoptic"),
        ("SSHSIGN_KEY_EXPORT", "wrapped-untrusted"),
    ];
    let cluster = sshsign::pgcluster::Cluster::start().unwrap();
    let url = cluster.create_database("sshsign").unwrap();
    let kept = tempfile::tempdir().unwrap();
    let (wrap_file, backup_file) = (kept.path().join("wrap.key"), kept.path().join("backup"));
    let (wrap_file, backup_file) = (wrap_file.to_str().unwrap(), backup_file.to_str().unwrap());

    let dir = tempfile::tempdir().unwrap();
    let store = kryoptic_store(dir.path());
    provisioned(&store, &wrapped, &["wrap-key", "--new", wrap_file]);
    let env = [("SSHSIGN_DATABASE_URL", url.as_str())];
    let a = Appliance::start_in(dir, store, &wrapped, &named(&env, "a"));
    let alice = a.user("alice");
    let key_id = alice.create_key("");
    let labels = |store| -> Vec<String> {
        token_keys(store, &wrapped)
            .iter()
            .map(|k| k["label"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        labels(&a.store).contains(&"sshsign-cosigner@a".to_owned()),
        "{:?}",
        labels(&a.store)
    );

    // The group's backup leaves the cosigner key out: the decision and checkpoint keys,
    // alice's key and the seal key.
    let written = provisioned(&a.store, &wrapped, &["backup", "--to", backup_file]);
    assert_eq!(written["keys"], 4, "{written}");
    assert!(
        !std::fs::read_to_string(backup_file)
            .unwrap()
            .contains("sshsign-cosigner")
    );

    // b: a token of its own, with the group's wrap key and the backup restored into it.
    let dir_b = tempfile::tempdir().unwrap();
    let store_b = kryoptic_store(dir_b.path());
    provisioned(&store_b, &wrapped, &["wrap-key", "--from", wrap_file]);
    provisioned(&store_b, &wrapped, &["restore", "--from", backup_file]);
    let b = Appliance::start_in(dir_b, store_b, &wrapped, &named(&env, "b"));
    assert!(!labels(&b.store).contains(&"sshsign-cosigner@a".to_owned()));
    assert!(labels(&b.store).contains(&"sshsign-cosigner@b".to_owned()));
    let alice_b = alice.at(&b);
    alice_b
        .run(&format!("sign --key-id {key_id}"), b"on b")
        .ok();

    // Each names its own cosigner key; the log's checkpoint is cosigned by whichever
    // appliance served it, and by the other once it serves the same.
    let at_a = alice.cmd("audit-checkpoint").ok().clone();
    let at_b = alice_b.cmd("audit-checkpoint").ok().clone();
    let (cosigner_a, cosigner_b) = (
        at_a["cosigner_key"].as_str().unwrap().to_owned(),
        at_b["cosigner_key"].as_str().unwrap().to_owned(),
    );
    let origin = at_a["origin"].as_str().unwrap();
    assert!(
        cosigner_a.starts_with(&format!("{origin}/cosigner/a+")),
        "{cosigner_a}"
    );
    assert!(
        cosigner_b.starts_with(&format!("{origin}/cosigner/b+")),
        "{cosigner_b}"
    );
    assert_eq!(at_a["size"], at_b["size"], "nothing was logged in between");
    let note = at_b["checkpoint"].as_str().unwrap();
    assert_eq!(
        note.lines().filter(|l| l.starts_with('\u{2014}')).count(),
        3,
        "{note}"
    );
    let cosigned_at = sshsign::audit::note::verify_cosignature(note, &cosigner_a).unwrap();
    let now = u64::try_from(sshsign::time::now()).unwrap();
    assert!(
        cosigned_at <= now && cosigned_at + 600 > now,
        "{cosigned_at}"
    );
    sshsign::audit::note::verify_cosignature(note, &cosigner_b).unwrap();
    // Each line is the cosigner's own: a's does not verify under b's key with a's name.
    let (_, b_public) = sshsign::audit::note::parse_cosigner_key(&cosigner_b).unwrap();
    let (a_name, _) = sshsign::audit::note::parse_cosigner_key(&cosigner_a).unwrap();
    assert!(
        sshsign::audit::note::verify_cosignature(
            note,
            &sshsign::audit::note::cosigner_key(&a_name, &b_public)
        )
        .is_err()
    );

    // A client requires both, over SSH through a and over HTTP from b's tiles.
    let state = kept.path().join("audit-state");
    let checked = shim(
        &alice,
        &state,
        &[
            "audit",
            "check",
            "--cosigner",
            &cosigner_a,
            "--cosigner",
            &cosigner_b,
        ],
    );
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
    let names: Vec<&str> = report["cosigned_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            format!("{origin}/cosigner/a"),
            format!("{origin}/cosigner/b")
        ]
    );
    let vkey = at_a["verifier_key"].as_str().unwrap();
    let tiles = format!("http://{}/audit", b.http_addr);
    let both = format!("{cosigner_a},{cosigner_b}");
    let from_tiles = shim(
        &alice,
        &kept.path().join("tiles-state"),
        &[
            "audit",
            "check",
            "--tiles",
            &tiles,
            "--key",
            vkey,
            "--cosigner",
            &both,
        ],
    );
    assert!(
        from_tiles.status.success(),
        "{}",
        String::from_utf8_lossy(&from_tiles.stderr)
    );

    // A cosigner that did not cosign is named, and the checkpoint is not taken.
    let stranger = sshsign::audit::note::cosigner_key(&format!("{origin}/cosigner/c"), &[7; 32]);
    let refused = shim(&alice, &state, &["audit", "check", "--cosigner", &stranger]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("no cosignature by") && why.contains("/cosigner/c"),
        "{why}"
    );
    // A cosigner key that is not one (a log key) is refused as such.
    let refused = shim(&alice, &state, &["audit", "check", "--cosigner", vkey]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("verifier key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // While the log grows, each checkpoint still gathers both: b signs one, and a, finding
    // the log grown past it, cosigns it before signing its own.
    alice_b.run(&format!("sign --key-id {key_id}"), b"2").ok();
    let by_b = alice_b.cmd("audit-checkpoint").ok().clone();
    let size_b = by_b["size"].as_u64().unwrap();
    assert!(size_b > at_b["size"].as_u64().unwrap());
    alice.run(&format!("sign --key-id {key_id}"), b"3").ok();
    let by_a = alice.cmd("audit-checkpoint").ok().clone();
    assert!(by_a["size"].as_u64().unwrap() > size_b);
    let then = alice
        .cmd(&format!("audit-consistency --from 1 --to {size_b}"))
        .ok()
        .clone();
    let note = then["checkpoint"].as_str().unwrap();
    sshsign::audit::note::verify_cosignature(note, &cosigner_a).unwrap();
    sshsign::audit::note::verify_cosignature(note, &cosigner_b).unwrap();

    // A key made through a after the backup reaches b's token through the store, wrapped under
    // the group's wrap key: b brings it in at its first signature with it.
    let later = alice.create_key("");
    let listed = alice.cmd("keys").ok().clone();
    let public_of = |id: &str| {
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key_id"] == id)
            .unwrap()["public_key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let later_public = public_of(&later);
    assert!(!labels(&b.store).contains(&later));
    let payload = b"made on a after the backup, signed on b\n";
    for _ in 0..2 {
        let signed = alice_b.run(&format!("sign --type git --key-id {later}"), payload);
        let signature = signed.ok()["signature"].as_str().unwrap().to_owned();
        let verified = ssh_keygen_verify(
            b.dir.path(),
            "alice@example.com",
            &later_public,
            "git",
            &signature,
            payload,
        );
        assert!(verified.status.success(), "{verified:?}");
    }
    assert!(labels(&b.store).contains(&later));

    // A wrapped copy swapped for another key's (someone who can write to the database) is
    // found out at its first use: nothing is signed, and the key it unwrapped is destroyed.
    let forged = alice.create_key("");
    let on_a = token_keys(&a.store, &wrapped);
    let object_of = |label: &str| {
        on_a.iter().find(|k| k["label"] == label).unwrap()["object_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (forged_object, later_object) = (object_of(&forged), object_of(&later));
    let swapped = format!(
        "UPDATE sshsign_records t SET value = convert_to(jsonb_set(convert_from(t.value, \
         'UTF8')::jsonb, '{{wrapped}}', convert_from(o.value, 'UTF8')::jsonb -> 'wrapped')::text, \
         'UTF8') FROM sshsign_records o WHERE t.tree = 'carried_keys' AND o.tree = \
         'carried_keys' AND t.key = convert_to('{forged_object}', 'UTF8') AND o.key = \
         convert_to('{later_object}', 'UTF8')"
    );
    assert_eq!(
        cluster.psql("sshsign", &swapped).unwrap().trim(),
        "UPDATE 1"
    );
    let refused = alice_b.run(&format!("sign --key-id {forged}"), b"forged");
    assert_ne!(refused.status, 0, "{:?}", refused.json);
    assert!(
        refused.json.get("signature").is_none(),
        "{:?}",
        refused.json
    );
    assert!(!labels(&b.store).contains(&forged));
    // Where it was made it signs as ever, and b goes on with the others.
    alice.run(&format!("sign --key-id {forged}"), b"on a").ok();
    alice_b
        .run(&format!("sign --key-id {later}"), b"again")
        .ok();

    let full = a.server_command(&["audit", "verify", "--full", "--key", vkey]);
    assert!(
        full.status.success(),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
}
