//! Several appliances sharing one PostgreSQL database. Here both use one SoftHSMv2 token
//! directory, which stands for tokens holding the same keys (restored from one backup).

use serde_json::json;

use crate::approvals::user_id;
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
}
