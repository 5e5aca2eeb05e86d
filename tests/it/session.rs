//! `ssh <appliance> session`: many requests over one channel, with stock `ssh` and with the
//! client library; the same rules, replies and audit entries as the one-shot commands.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::{Appliance, assert_git_signature, run_with_stdin};

/// The session's reply lines (after the greeting), by id; and the greeting.
fn replies(stdout: &[u8]) -> (Value, Vec<Value>) {
    let mut lines = stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<Value>(l).unwrap());
    let greeting = lines.next().expect("a greeting");
    (greeting, lines.collect())
}

fn by_id<'a>(replies: &'a [Value], id: &Value) -> &'a Value {
    let found: Vec<&Value> = replies.iter().filter(|r| &r["id"] == id).collect();
    assert_eq!(found.len(), 1, "one reply for {id}: {replies:#?}");
    found[0]
}

#[test]
fn stock_ssh_carries_many_requests_and_bad_lines_get_their_own_replies() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let created = alice.create_key("--scope git");
    let public_key = alice.cmd("keys").ok()["keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let payload = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\ncommit\n";
    let stdin = base64::engine::general_purpose::STANDARD.encode(payload);
    // Longer than any line the greeting allows (a 1 MiB payload in base64, and room).
    let too_long = "x".repeat(2 << 20);
    let lines = [
        json!({"id": 1, "command": "whoami"}).to_string(),
        json!({"id": "sig", "args": ["sign", "--type", "git", "--key-id", created], "stdin": stdin})
            .to_string(),
        "this is not json".to_owned(),
        json!({"id": 3, "command": "sign --type file --key-id ak_nope"}).to_string(),
        json!({"id": 4, "command": "no-such-command"}).to_string(),
        String::new(),
        too_long,
        json!({"id": 5, "args": ["session"]}).to_string(),
        json!({"id": 6, "command": "keys"}).to_string(),
    ];
    let input = lines.join("\n") + "\n";
    let output = run_with_stdin(alice.ssh_command().arg("session"), input.as_bytes());
    assert!(output.status.success(), "{output:?}");
    let (greeting, replies) = replies(&output.stdout);
    assert_eq!(greeting["session"]["protocol"], "sshsign-session-1");
    assert_eq!(greeting["session"]["max_in_flight"], 64);
    assert!(greeting["session"]["max_line_bytes"].as_u64().unwrap() < 2 << 20);

    let whoami = by_id(&replies, &json!(1));
    assert_eq!(whoami["exit_status"], 0);
    assert!(
        whoami["reply"]["user_id"]
            .as_str()
            .unwrap()
            .starts_with("usr_")
    );
    // The signature is the one-shot form's: stock ssh-keygen verifies it.
    let signed = by_id(&replies, &json!("sig"));
    assert_eq!(signed["exit_status"], 0, "{signed}");
    let signature = signed["reply"]["signature"].as_str().unwrap();
    assert_git_signature(appliance.dir.path(), &public_key, signature, payload);
    assert!(signed["reply"]["audit"]["index"].is_u64());
    // Bad lines are answered (without an id where none could be read) and the session goes on.
    let unknown = by_id(&replies, &json!(3));
    assert_eq!(unknown["exit_status"], 1);
    assert_eq!(unknown["reply"]["error"]["code"], "unknown_key");
    assert_eq!(by_id(&replies, &json!(4))["exit_status"], 2);
    assert_eq!(
        by_id(&replies, &json!(4))["reply"]["error"]["code"],
        "unknown_command"
    );
    assert_eq!(
        by_id(&replies, &json!(5))["reply"]["error"]["code"],
        "invalid_usage"
    );
    let anonymous: Vec<&Value> = replies.iter().filter(|r| r["id"].is_null()).collect();
    assert_eq!(anonymous.len(), 2, "{anonymous:#?}");
    assert!(anonymous.iter().all(|r| r["exit_status"] == 2));
    assert!(anonymous.iter().any(|r| {
        r["reply"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most")
    }));
    let keys = by_id(&replies, &json!(6));
    assert_eq!(keys["reply"]["keys"][0]["key_id"], created.as_str());
    assert_eq!(replies.len(), 8);

    // The session's signature and refusal are audit entries, as one-shot commands' are.
    let entries = alice.cmd("audit-entries").ok()["entries"].clone();
    let results: Vec<(&str, &str)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["entry"]["action"].as_str().unwrap(),
                e["entry"]["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(results.contains(&("sign", "signed")), "{results:?}");
}

#[test]
fn the_client_pipelines_requests_on_one_session() {
    let appliance = Appliance::start();
    let bob = appliance.user("bob");
    let key = bob.create_key("--scope file");
    let config = appliance.client_config(&bob);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut signatures = runtime.block_on(async {
        let connection = sshsign::client::Connection::connect(&config).await.unwrap();
        let session = Arc::new(sshsign::client::Session::open(&connection).await.unwrap());
        assert_eq!(session.max_in_flight(), 64);
        // More at once than the window (within the signing quota's burst of 100): the client
        // waits for room, nothing is refused.
        let mut running = tokio::task::JoinSet::new();
        for i in 0..90 {
            let (session, key) = (Arc::clone(&session), key.clone());
            running.spawn(async move {
                let words = ["sign", "--type", "file", "--key-id", &key].map(String::from);
                let reply = session
                    .run(&words, format!("payload {i}").as_bytes())
                    .await
                    .unwrap();
                assert_eq!(reply.exit_status, 0, "{reply:?}");
                reply.json().unwrap()["signature"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            });
        }
        let mut signatures = Vec::new();
        while let Some(signature) = running.join_next().await {
            signatures.push(signature.unwrap());
        }
        // A refusal comes back as the one-shot form's reply, with its status.
        let denied = session
            .run(
                &["sign", "--type", "git", "--key-id", &key].map(String::from),
                b"x",
            )
            .await
            .unwrap();
        assert_eq!(denied.exit_status, 1);
        assert_eq!(denied.json().unwrap()["error"]["code"], "scope_denied");
        let Ok(session) = Arc::try_unwrap(session) else {
            panic!("the session is still shared");
        };
        session.close().await;
        assert_eq!(connection.connections_opened().await, 1);
        connection.close().await;
        signatures
    });
    signatures.sort();
    signatures.dedup();
    assert_eq!(signatures.len(), 90);
    // Each has its audit entry.
    let mut signed = 0;
    let mut from = 0;
    loop {
        let page = bob.cmd(&format!("audit-entries --from {from} --limit 1000"));
        let page = page.ok();
        signed += page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["entry"]["action"] == "sign" && e["entry"]["result"] == "signed")
            .count();
        match page["next"].as_u64() {
            Some(next) => from = next,
            None => break,
        }
    }
    assert_eq!(signed, 90);
}

#[test]
fn an_unlinked_key_stops_acting_in_a_session_already_open() {
    let appliance = Appliance::start();
    let carol = appliance.user("carol");
    let laptop = appliance.user("laptop");
    let code = carol.cmd("link start").ok()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    laptop.cmd(&format!("link finish --code {code}")).ok();
    let fingerprint = laptop.cmd("whoami").ok()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = appliance.client_config(&laptop);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let connection = sshsign::client::Connection::connect(&config).await.unwrap();
        let session = sshsign::client::Session::open(&connection).await.unwrap();
        let whoami = ["whoami".to_owned()];
        assert_eq!(session.run(&whoami, b"").await.unwrap().exit_status, 0);
        carol
            .cmd(&format!("unlink --fingerprint {fingerprint}"))
            .ok();
        let after = session.run(&whoami, b"").await.unwrap();
        assert_eq!(after.exit_status, 1, "{after:?}");
        session.close().await;
        connection.close().await;
    });
}
