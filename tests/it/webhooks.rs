//! Webhooks to a receiver on loopback: decisions to the callback and the owner's endpoints,
//! signed Standard Webhooks style by the token; retries with backoff, across a restart; 410
//! stops them; redirects are not followed; expiry is announced; approvers are notified with
//! their links; internal destinations are refused unless the operator allows them.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::approvals::{api_key, create, status, user_id};
use crate::common::{Appliance, User};

const ALLOW_LOOPBACK: (&str, &str) = ("SSHSIGN_WEBHOOK_ALLOW", "127.0.0.0/8");
const FAST_RETRY: (&str, &str) = ("SSHSIGN_WEBHOOK_RETRY_SECONDS", "1");

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    at: Instant,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP receiver on loopback that answers with the statuses it is given (then 200).
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    fn start() -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    fn on(listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(VecDeque::new()));
        let (sink, queue) = (Arc::clone(&got), Arc::clone(&answers));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let mut headers = Vec::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                    }
                }
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let status = queue.lock().unwrap().pop_front().unwrap_or(200);
                sink.lock().unwrap().push(Received {
                    path,
                    headers,
                    body,
                    at: Instant::now(),
                });
                let extra = if status == 302 {
                    "Location: http://127.0.0.1:9/elsewhere\r\n"
                } else {
                    ""
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            }
        });
        Receiver { addr, got, answers }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn answer_with(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().extend(statuses);
    }

    /// Waits until `count` requests have arrived; returns them all.
    fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} arrived",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

/// The appliance's webhook key, from its JWKS (the decision key).
fn decision_key(appliance: &Appliance) -> [u8; 32] {
    let (_, jwks) = appliance.http_get("/.well-known/jwks.json");
    sshsign::approval::decision::jwks_keys(&jwks).unwrap()[0].1
}

fn signature_ok(key: &[u8; 32], got: &Received) -> bool {
    let timestamp: i64 = got.header("webhook-timestamp").parse().unwrap();
    sshsign::webhook::verify(
        key,
        got.header("webhook-id"),
        timestamp,
        &got.body,
        got.header("webhook-signature"),
    )
}

/// The check the README asks of a receiver: the signature by the appliance's key, then that the
/// delivery names this endpoint's URL and the user it belongs to, inside what is signed.
fn receiver_accepts(key: &[u8; 32], got: &Received, my_url: &str, my_owner: &str) -> bool {
    let body = got.json();
    signature_ok(key, got) && body["destination"]["url"] == my_url && body["owner"] == my_owner
}

#[test]
fn a_decision_is_posted_signed_to_the_callback_and_the_owners_endpoints() {
    let appliance = Appliance::start_with(&[ALLOW_LOOPBACK]);
    let receiver = Receiver::start();
    let alice = appliance.user("alice");
    let (added, key, id) = an_endpoint_and_a_request_with_a_callback(&appliance, &receiver, &alice);
    alice.cmd(&format!("approve --id {id}")).ok();
    let got =
        both_get_the_decision_signed_and_addressed(&appliance, &receiver, &alice, &added, &id);
    the_decision_inside_verifies_on_its_own(&appliance, &got[0], &id);
    the_owner_sees_the_deliveries_and_the_log_has_them(&appliance, &alice, &key, &id);
}

/// An endpoint for alice's decisions, and a request of hers with its own callback, not yet
/// decided: returns `webhook add`'s reply, the API key and the request's id.
fn an_endpoint_and_a_request_with_a_callback(
    appliance: &Appliance,
    receiver: &Receiver,
    alice: &User,
) -> (crate::common::Reply, String, String) {
    let added = alice.cmd(&format!("webhook add --url {}", receiver.url("/endpoint")));
    let whpk = added.ok()["signing"]["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(whpk.starts_with("whpk_"));
    assert_eq!(
        alice.cmd("webhooks").ok()["webhooks"][0]["url"],
        receiver.url("/endpoint")
    );
    let key = api_key(alice, "approval:create,approval:read");
    let made = create(
        appliance,
        &key,
        json!({"action": "Deploy", "methods": ["ssh"], "callback_url": receiver.url("/callback")}),
    );
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(receiver.count(), 0, "nothing is sent before the decision");
    (added, key, id)
}

fn both_get_the_decision_signed_and_addressed(
    appliance: &Appliance,
    receiver: &Receiver,
    alice: &User,
    added: &crate::common::Reply,
    id: &str,
) -> Vec<Received> {
    let whpk = added.json["signing"]["public_key"].as_str().unwrap();
    let got = receiver.wait_for(2);
    let mut paths: Vec<&str> = got.iter().map(|g| g.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/callback", "/endpoint"]);
    let key_bytes = decision_key(appliance);
    use base64::Engine as _;
    assert_eq!(
        whpk,
        format!(
            "whpk_{}",
            base64::engine::general_purpose::STANDARD.encode(key_bytes)
        )
    );
    for delivery in &got {
        assert!(delivery.header("webhook-id").starts_with("msg_"));
        assert!(delivery.header("webhook-signature").starts_with("v1a,"));
        assert!(signature_ok(&key_bytes, delivery), "{delivery:?}");
        let body = delivery.json();
        assert_eq!(body["type"], "approval.decided");
        assert_eq!(body["data"]["id"], id);
        assert_eq!(body["data"]["decision"]["decision"], "approved");
        // It names where it was sent and whose endpoint that is, so a receiver can refuse a
        // delivery replayed to it that was meant for another endpoint.
        let here = receiver.url(&delivery.path);
        let endpoint = if delivery.path == "/callback" {
            "callback".to_owned()
        } else {
            added.json["id"].as_str().unwrap().to_owned()
        };
        assert_eq!(body["destination"]["url"], here.as_str(), "{body}");
        assert_eq!(body["destination"]["endpoint"], endpoint.as_str(), "{body}");
        assert_eq!(body["owner"], user_id(alice).as_str());
        assert!(receiver_accepts(
            &key_bytes,
            delivery,
            &here,
            &user_id(alice)
        ));
        let elsewhere = if delivery.path == "/callback" {
            receiver.url("/endpoint")
        } else {
            receiver.url("/callback")
        };
        assert!(!receiver_accepts(
            &key_bytes,
            delivery,
            &elsewhere,
            &user_id(alice)
        ));
        assert!(!receiver_accepts(
            &key_bytes,
            delivery,
            &here,
            "usr_someoneelse"
        ));
        // A changed body no longer verifies.
        let mut forged = delivery.clone();
        forged.body = forged
            .body
            .iter()
            .map(|b| if *b == b'D' { b'd' } else { *b })
            .collect();
        assert!(!signature_ok(&key_bytes, &forged));
    }
    got
}

fn the_decision_inside_verifies_on_its_own(appliance: &Appliance, delivered: &Received, id: &str) {
    let dir = tempfile::tempdir().unwrap();
    let jwks = appliance.save_jwks(dir.path());
    let file = crate::common::write_file(
        dir.path(),
        "hook.json",
        delivered.json()["data"].to_string(),
    );
    assert!(
        crate::common::offline_check("verify-approval", &jwks, &["--request-id", id], &file)
            .status
            .success()
    );
}

fn the_owner_sees_the_deliveries_and_the_log_has_them(
    appliance: &Appliance,
    alice: &User,
    key: &str,
    id: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = status(appliance, key, id);
        let states: Vec<&str> = shown["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["state"].as_str().unwrap())
            .collect();
        if states == ["delivered", "delivered"] {
            break;
        }
        assert!(Instant::now() < deadline, "{shown}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let entries = alice.cmd("audit-entries");
    let actions: Vec<String> = entries.ok()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["entry"]["action"].as_str().unwrap(),
                e["entry"]["result"].as_str().unwrap()
            )
        })
        .filter(|a| a.starts_with("webhook"))
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "webhook_delivery:delivered")
            .count(),
        2,
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| a == "webhook_endpoint_add:done"));
}

#[test]
fn failures_are_retried_with_backoff_across_a_restart_and_410_or_redirects_are_not_followed() {
    let mut appliance = Appliance::start_with(&[ALLOW_LOOPBACK, FAST_RETRY]);
    let alice = appliance.user("alice");
    let key = api_key(&alice, "approval:create,approval:read");

    // 500, then 200: two attempts, one message id, at least the backoff apart.
    let receiver = Receiver::start();
    receiver.answer_with(&[500]);
    let id = create(
        &appliance,
        &key,
        json!({"action": "a", "methods": ["ssh"], "callback_url": receiver.url("/hook")}),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.cmd(&format!("approve --id {id}")).ok();
    let got = receiver.wait_for(2);
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert!(
        got[1].at - got[0].at >= Duration::from_millis(900),
        "{:?}",
        got[1].at - got[0].at
    );
    assert!(signature_ok(&decision_key(&appliance), &got[1]));

    // 410 Gone stops it; a redirect is an answer, not a place to go.
    let gone = Receiver::start();
    gone.answer_with(&[410]);
    let moved = Receiver::start();
    moved.answer_with(&[302, 302, 302, 302]);
    for receiver in [&gone, &moved] {
        let id = create(
            &appliance,
            &key,
            json!({"action": "b", "methods": ["ssh"], "callback_url": receiver.url("/hook")}),
        )["id"]
            .as_str()
            .unwrap()
            .to_owned();
        alice.cmd(&format!("approve --id {id}")).ok();
    }
    gone.wait_for(1);
    // A redirect is retried, not followed; by its third attempt a retry of the 410 would
    // have come too.
    moved.wait_for(3);
    assert_eq!(gone.count(), 1, "410 stops the retries");

    // A receiver that is down: the delivery waits, survives a restart, and arrives.
    let parked = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = parked.local_addr().unwrap().port();
    drop(parked);
    let url = format!("http://127.0.0.1:{port}/late");
    let id = create(
        &appliance,
        &key,
        json!({"action": "c", "methods": ["ssh"], "callback_url": url}),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.cmd(&format!("approve --id {id}")).ok();
    std::thread::sleep(Duration::from_millis(500));
    appliance.stop();
    let late = Receiver::on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    appliance.restart_with(&[]);
    let got = late.wait_for(1);
    assert_eq!(got[0].json()["data"]["id"], id.as_str());
    let shown = status(&appliance, &key, &id);
    assert!(
        shown["webhooks"][0]["attempts"].as_u64().unwrap() >= 2,
        "{shown}"
    );
}

#[test]
fn internal_destinations_are_refused_unless_allowed() {
    let mut appliance = Appliance::start();
    let alice = appliance.user("alice");
    let key = api_key(&alice, "approval:create,approval:read");
    let receiver = Receiver::start();
    let port = receiver.addr.port();
    for url in [
        receiver.url("/hook"),
        format!("http://localhost:{port}/hook"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[::1]/".to_owned(),
        "http://10.0.0.7/".to_owned(),
        "http://[::ffff:127.0.0.1]/".to_owned(),
    ] {
        let refused = crate::approvals::post(
            &appliance,
            &key,
            &json!({"action": "x", "callback_url": url}),
        );
        // Well-formed, refused for where it leads: 422.
        assert_eq!(refused.status, 422, "{url}");
        assert!(
            refused.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("may not reach"),
            "{url}"
        );
        alice
            .cmd(&format!("webhook add --url {url}"))
            .failed_with("invalid_argument");
        alice
            .cmd(&format!("notify set --url {url}"))
            .failed_with("invalid_argument");
    }

    // Allowed when the request was made, refused when delivered: checked again at each attempt.
    appliance.restart_with(&[ALLOW_LOOPBACK]);
    let alice = alice.at(&appliance);
    let id = create(
        &appliance,
        &key,
        json!({"action": "x", "methods": ["ssh"], "callback_url": receiver.url("/hook")}),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    appliance.restart();
    let alice = alice.at(&appliance);
    alice.cmd(&format!("approve --id {id}")).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = status(&appliance, &key, &id);
        if shown["webhooks"][0]["state"] == "failed" {
            assert!(
                shown["webhooks"][0]["last_result"]
                    .as_str()
                    .unwrap()
                    .contains("may not reach")
            );
            break;
        }
        assert!(Instant::now() < deadline, "{shown}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(receiver.count(), 0);
}

#[test]
fn approvers_hear_of_new_requests_and_callers_of_expiry() {
    let mut appliance = Appliance::start_with(&[ALLOW_LOOPBACK]);
    let (alice, bob) = (appliance.user("alice"), appliance.user("bob"));
    let receiver = Receiver::start();
    bob.cmd(&format!("notify set --url {}", receiver.url("/ntfy/bob")))
        .ok();
    assert_eq!(
        bob.cmd("notify show").ok()["url"],
        receiver.url("/ntfy/bob")
    );
    let key = api_key(&alice, "approval:create,approval:read");
    bob.accept(&alice);
    let made = create(
        &appliance,
        &key,
        json!({"action": "Ship it", "approvers": [user_id(&bob)], "ttl_seconds": 60,
               "callback_url": receiver.url("/callback")}),
    );
    let got = receiver.wait_for(1);
    assert_eq!(got[0].path, "/ntfy/bob");
    let body = got[0].json();
    // Slack and ntfy show "text"; it carries Bob's own link, which opens his page.
    let link = body["data"]["approval_url"].as_str().unwrap();
    assert_eq!(link, made["approval_url"].as_str().unwrap());
    assert!(body["text"].as_str().unwrap().contains(link));
    let path = link
        .split_once(&format!("localhost:{}", appliance.http_addr.port()))
        .unwrap()
        .1;
    assert_eq!(appliance.http("GET", path, &[], b"").status, 200);

    // Two minutes later, nobody having looked, the caller hears the request expired.
    appliance.restart_with(&[
        ALLOW_LOOPBACK,
        (
            "LD_PRELOAD",
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        ),
        ("FAKETIME", "+2m"),
        ("DONT_FAKE_MONOTONIC", "1"),
    ]);
    let got = receiver.wait_for(2);
    assert_eq!(got[1].path, "/callback");
    let expired = got[1].json();
    assert_eq!(expired["type"], "approval.expired");
    assert_eq!(expired["data"]["status"], "expired");
    bob.at(&appliance).cmd("notify clear").ok();
}

/// On a device that signs short messages only (YubiHSM 2: 2,047 bytes), a delivery whose body is
/// longer can never be signed, since Standard Webhooks signs the whole body: it fails once, with
/// the reason, instead of being retried; a short one goes through, and the decision itself (a
/// few hundred bytes of hashes) is signed either way.
#[test]
fn a_body_over_the_devices_message_limit_fails_once_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("short-messages.toml");
    let softhsm = include_str!("../../hsm-profiles/softhsm2.toml")
        .replace("verify = true\n", "verify = true\nmessage_limit = 2047\n");
    assert!(softhsm.contains("message_limit = 2047"));
    std::fs::write(&profile, softhsm).unwrap();
    let appliance = Appliance::start_with(&[
        ALLOW_LOOPBACK,
        FAST_RETRY,
        ("SSHSIGN_HSM_PROFILE", profile.to_str().unwrap()),
    ]);
    let receiver = Receiver::start();
    let alice = appliance.user("alice");
    let key = api_key(&alice, "approval:create,approval:read");
    let request = |metadata: Value| {
        let made = create(
            &appliance,
            &key,
            json!({"action": "Deploy", "methods": ["ssh"], "metadata": metadata,
                   "callback_url": receiver.url("/callback")}),
        );
        let id = made["id"].as_str().unwrap().to_owned();
        alice.cmd(&format!("approve --id {id}")).ok();
        id
    };
    let wait_for_state = |id: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let shown = status(&appliance, &key, id);
            let state = shown["webhooks"][0]["state"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            if state != "pending" && !state.is_empty() {
                return shown;
            }
            assert!(Instant::now() < deadline, "{shown}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    let long = request(json!({"notes": "x".repeat(4000)}));
    let shown = wait_for_state(&long);
    assert_eq!(shown["webhooks"][0]["state"], "failed", "{shown}");
    assert_eq!(shown["webhooks"][0]["attempts"], 1, "{shown}");
    let reason = shown["webhooks"][0]["last_result"].as_str().unwrap();
    assert!(
        reason.contains("cannot sign") && reason.contains("at most 2047 bytes"),
        "{reason}"
    );
    // The decision itself was signed and verifies.
    assert_eq!(shown["status"], "approved", "{shown}");
    assert!(shown["decision"]["signature"].is_string(), "{shown}");

    let short = request(json!({"ticket": "OPS-1"}));
    assert_eq!(wait_for_state(&short)["webhooks"][0]["state"], "delivered");
    assert_eq!(receiver.count(), 1, "only the short one was sent");
}
