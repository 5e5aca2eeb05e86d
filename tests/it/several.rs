//! Several appliances sharing one PostgreSQL database. Here both use one SoftHSMv2 token
//! directory, which stands for tokens holding the same keys (restored from one backup).

use serde_json::json;

use crate::approvals::user_id;
use crate::audit::shim;
use crate::common::{Appliance, ssh_keygen_verify};

#[test]
fn two_appliances_on_one_database_serve_the_same_people_keys_and_requests() {
    let cluster = sshsign::pgcluster::Cluster::start().unwrap();
    let url = cluster.create_database("sshsign").unwrap();
    let env = [
        ("SSHSIGN_DATABASE_URL", url.as_str()),
        ("SSHSIGN_QUOTAS", "signatures=4/h"),
    ];
    let a = Appliance::start_with(&env);
    let b = Appliance::start_in(tempfile::tempdir().unwrap(), a.store.clone(), &[], &env);

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
