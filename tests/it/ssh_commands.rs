//! The command set over the stock OpenSSH client.

use serde_json::Value;

use crate::common::{Appliance, assert_git_signature, ssh_keygen_verify, token_keys};

/// The token's own account of the key labelled `label`, if it holds one.
fn token_key(appliance: &Appliance, label: &str) -> Option<Value> {
    token_keys(&appliance.store, &[])
        .into_iter()
        .find(|key| key["label"] == label)
}

#[test]
fn create_sign_verify_revoke_then_signing_fails() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");

    let who = alice.cmd("whoami");
    let user_id = who.ok()["user_id"].as_str().unwrap().to_owned();
    assert!(user_id.starts_with("usr_"), "{who:?}");
    assert_eq!(who.json["keys_owned"], 0);

    let created = alice.cmd("create-key --scope git");
    let key = created.ok();
    let key_id = key["key_id"].as_str().unwrap().to_owned();
    assert!(
        key_id.starts_with("ak_") && key_id.len() >= 3 + 20,
        "{key_id}"
    );
    let public_key = key["public_key"].as_str().unwrap().to_owned();
    assert!(public_key.starts_with("ssh-ed25519 AAAA"), "{public_key}");
    assert_eq!(key["status"], "active");

    // The private half is in the token, sensitive and never extractable.
    let in_token = token_key(&appliance, &key_id).expect("the key is in the token");
    assert_eq!(in_token["fingerprint"], key["fingerprint"]);
    let attributes = &in_token["attributes"];
    assert_eq!(attributes["sensitive"], true, "{attributes}");
    assert_eq!(attributes["extractable"], false, "{attributes}");
    assert_eq!(attributes["never_extractable"], true, "{attributes}");
    assert_eq!(attributes["always_sensitive"], true, "{attributes}");

    let keys = alice.cmd("keys");
    assert_eq!(keys.ok()["keys"][0]["key_id"], key_id.as_str());

    let payload = b"tree 0123\nauthor alice\n\nfirst commit\n";
    let signed = alice.run(&format!("sign --type git --key-id {key_id}"), payload);
    let signature = signed.ok()["signature"].as_str().unwrap().to_owned();
    assert!(signature.starts_with("-----BEGIN SSH SIGNATURE-----\n"));
    assert_eq!(signed.json["public_key"], public_key.as_str());

    // Stock OpenSSH accepts the token's signature, and only for the payload and namespace signed.
    let dir = appliance.dir.path();
    assert_git_signature(dir, &public_key, &signature, payload);
    let other = ssh_keygen_verify(
        dir,
        "alice@example.com",
        &public_key,
        "git",
        &signature,
        b"x",
    );
    assert!(!other.status.success());
    let wrong_ns = ssh_keygen_verify(
        dir,
        "alice@example.com",
        &public_key,
        "file",
        &signature,
        payload,
    );
    assert!(!wrong_ns.status.success());

    // The appliance verifies it too and names the key.
    let verified = alice.run(&format!("verify --signature '{signature}'"), payload);
    assert_eq!(verified.ok()["valid"], true);
    assert_eq!(verified.json["key_id"], key_id.as_str());
    assert_eq!(verified.json["key_status"], "active");

    let revoked = alice.cmd(&format!("revoke --key-id {key_id}"));
    assert_eq!(revoked.ok()["status"], "revoked");
    assert!(
        token_key(&appliance, &key_id).is_none(),
        "revocation destroys the private half"
    );
    let refused = alice.run(&format!("sign --key-id {key_id}"), payload);
    assert!(refused.failed_with("key_revoked").contains(&key_id));
    assert_eq!(alice.cmd("keys").ok()["keys"][0]["status"], "revoked");
    assert_eq!(
        alice.cmd("keys --active").ok()["keys"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Old signatures still verify against the recorded public key, and say the key is revoked.
    let after = alice.run(&format!("verify --signature '{signature}'"), payload);
    assert_eq!(after.ok()["key_status"], "revoked");
}

#[test]
fn an_ssh_key_is_one_user_and_other_keys_are_others() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let bob = appliance.user("bob");
    let first = alice.cmd("whoami").ok()["user_id"].clone();
    assert_eq!(alice.cmd("whoami").ok()["user_id"], first);
    assert_ne!(bob.cmd("whoami").ok()["user_id"], first);

    // Users with RSA and ECDSA keys register too.
    for key_type in ["rsa", "ecdsa"] {
        let user = appliance.user_with_key_type(&format!("u_{key_type}"), key_type);
        assert!(
            user.cmd("whoami").ok()["user_id"]
                .as_str()
                .unwrap()
                .starts_with("usr_")
        );
    }
}

#[test]
fn concurrent_first_connections_register_one_user() {
    let appliance = Appliance::start();
    let carol = appliance.user("carol");
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let carol = carol.clone();
            std::thread::spawn(move || carol.cmd("whoami").ok()["user_id"].clone())
        })
        .collect();
    let ids: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}

#[test]
fn keys_and_users_survive_a_restart() {
    let mut appliance = Appliance::start();
    let erin = appliance.user("erin");
    let user_id = erin.cmd("whoami").ok()["user_id"].clone();
    let key_id = erin.create_key("");

    appliance.restart();
    let erin = erin.at(&appliance);
    assert_eq!(erin.cmd("whoami").ok()["user_id"], user_id);
    let signed = erin.run(&format!("sign --key-id {key_id}"), b"after restart");
    assert_eq!(signed.ok()["key_id"], key_id.as_str());
}

#[test]
fn authorized_keys_limits_who_may_connect() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("authorized_keys");
    // The file must exist before the appliance starts; fill it once the user's key exists.
    std::fs::write(&allowed, "").unwrap();
    let appliance =
        Appliance::start_with(&[("SSHSIGN_AUTHORIZED_KEYS", allowed.to_str().unwrap())]);
    let listed = appliance.user("listed");
    let stranger = appliance.user("stranger");
    let public = std::fs::read_to_string(listed.key.with_extension("pub")).unwrap();
    std::fs::write(&allowed, &public).unwrap();

    // Read at start-up: with an empty list nobody may connect.
    let refused = listed.cmd("whoami");
    assert_eq!(refused.status, 255, "{refused:?}");
    assert!(refused.stderr.contains("Permission denied"), "{refused:?}");

    let mut restarted = appliance;
    restarted.restart();
    listed.at(&restarted).cmd("whoami").ok();
    let refused = stranger.at(&restarted).cmd("whoami");
    assert_eq!(refused.status, 255);
    assert!(refused.stderr.contains("Permission denied"), "{refused:?}");
}

#[test]
fn shutdown_on_sigterm_is_clean() {
    let mut appliance = Appliance::start();
    appliance.user("fay").cmd("whoami").ok();
    let status = appliance.stop();
    assert!(status.success(), "{status:?}\n{}", appliance.log());
}

/// Established TCP connections whose local port is `port` (the server's side of each).
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1).is_some_and(|a| a.ends_with(&local)) && fields.get(3) == Some(&"01")
        })
        .count()
}

#[test]
fn the_client_moves_to_a_fresh_connection_and_the_old_one_ends() {
    let appliance = Appliance::start();
    let dave = appliance.user("dave");
    let user_id = dave.cmd("whoami").ok()["user_id"].clone();
    let config = appliance.client_config(&dave);
    let port = config.port;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let connection = sshsign::client::Connection::connect(&config)
            .await
            .unwrap()
            .reconnect_after(4);
        let connection = std::sync::Arc::new(connection);
        // Two waves of commands at once, then four one by one: 14 commands, 4 a connection.
        for wave in [5, 5, 1, 1, 1, 1] {
            let mut running = tokio::task::JoinSet::new();
            for _ in 0..wave {
                let connection = std::sync::Arc::clone(&connection);
                running.spawn(async move { connection.run(&["whoami".to_owned()], &[]).await });
            }
            while let Some(reply) = running.join_next().await {
                let reply = reply.unwrap().unwrap();
                assert_eq!(reply.exit_status, 0);
                assert_eq!(reply.json().unwrap()["user_id"], user_id);
            }
        }
        assert_eq!(connection.connections_opened().await, 4);
        // The connections that carried their share end once their commands are answered.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while established_to(port) > 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(established_to(port), 1);
        let Ok(connection) = std::sync::Arc::try_unwrap(connection) else {
            panic!("the connection is still shared");
        };
        connection.close().await;
    });
}

/// A tool the tests install from PyPI into `target/tools` (`make deps`).
pub fn python_tool(name: &str) -> std::path::PathBuf {
    let tool = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/tools/bin")
        .join(name);
    assert!(
        tool.exists(),
        "{} is missing: `make deps` installs it",
        tool.display()
    );
    tool
}

/// ssh-audit's note that a key exchange is classical: true of X25519, which OpenSSH 9.2 (no
/// ML-KEM hybrid before 9.9) needs, and nothing weak.
const CLASSICAL_ONLY: &str = "does not provide protection against post-quantum attacks";

#[test]
fn ssh_audit_finds_nothing_weak_and_stock_ssh_still_connects() {
    let appliance = Appliance::start();
    let audit = std::process::Command::new(python_tool("ssh-audit"))
        .args([
            "-j",
            "-p",
            &appliance.ssh_addr.port().to_string(),
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&audit.stdout).unwrap_or_else(|_| {
        panic!(
            "ssh-audit: {}{}",
            String::from_utf8_lossy(&audit.stdout),
            String::from_utf8_lossy(&audit.stderr)
        )
    });
    let mut findings = Vec::new();
    for kind in ["kex", "key", "enc", "mac"] {
        for algorithm in report[kind].as_array().unwrap() {
            let notes = &algorithm["notes"];
            for fail in notes["fail"].as_array().into_iter().flatten() {
                findings.push(format!("{kind} {}: fail {fail}", algorithm["algorithm"]));
            }
            for warn in notes["warn"].as_array().into_iter().flatten() {
                if warn.as_str() != Some(CLASSICAL_ONLY) {
                    findings.push(format!("{kind} {}: warn {warn}", algorithm["algorithm"]));
                }
            }
        }
    }
    assert!(findings.is_empty(), "{findings:#?}");
    assert_eq!(report["kex"][0]["algorithm"], "mlkem768x25519-sha256");
    assert_eq!(
        report["compression"],
        serde_json::json!(["none"]),
        "{}",
        report["compression"]
    );
    // Stock OpenSSH 9.2 still connects (through X25519), as the `sshsign` client does (the
    // hybrid).
    let alice = appliance.user("alice");
    alice.cmd("whoami").ok();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let connection = sshsign::client::Connection::connect(&appliance.client_config(&alice))
            .await
            .unwrap();
        let reply = connection.run(&["whoami".to_owned()], &[]).await.unwrap();
        assert_eq!(reply.exit_status, 0);
        connection.close().await;
    });
}

/// What a raw TCP connection to `addr` reads first (up to a line), within a few seconds.
fn first_bytes(stream: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read as _;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buffer = [0; 64];
    let n = stream.read(&mut buffer).unwrap_or(0);
    buffer[..n].to_vec()
}

/// The appliance's SSH connections per source, and its login grace time (README, "Security
/// model").
const PER_SOURCE: usize = 64;
const LOGIN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

#[test]
fn connections_are_capped_per_source_and_must_authenticate_in_time() {
    use std::io::Read as _;
    let appliance = Appliance::start();
    let started = std::time::Instant::now();
    // A source's share of connections, each sent the banner and then nothing.
    let mut held: Vec<std::net::TcpStream> = (0..PER_SOURCE)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(appliance.ssh_addr).unwrap();
            assert!(first_bytes(&mut stream).starts_with(b"SSH-2.0-sshsign"));
            stream
        })
        .collect();
    // One more from the same source is closed at once, without a banner.
    let mut refused = std::net::TcpStream::connect(appliance.ssh_addr).unwrap();
    assert_eq!(first_bytes(&mut refused), b"");
    // A slot given back is a slot free again.
    held.pop();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut again = std::net::TcpStream::connect(appliance.ssh_addr).unwrap();
    assert!(first_bytes(&mut again).starts_with(b"SSH-2.0-sshsign"));
    // Meanwhile a client that authenticates is served as ever... once slots free up.
    drop(held.split_off(8));
    std::thread::sleep(std::time::Duration::from_millis(200));
    appliance.user("alice").cmd("whoami").ok();
    // None of the silent ones authenticated: each is closed once the login grace time is over.
    let mut rest = [0; 256];
    for stream in &mut held {
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        while stream.read(&mut rest).unwrap_or(0) > 0 {}
    }
    let waited = started.elapsed();
    assert!(
        waited >= LOGIN_GRACE && waited < LOGIN_GRACE * 2,
        "{waited:?}"
    );
}

/// Follows `next` from `command`'s first page; returns every page's `field`.
fn every_page(
    user: &crate::common::User,
    command: &str,
    field: &str,
    limit: usize,
) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut from = 0;
    loop {
        let reply = user.cmd(&format!("{command} --limit {limit} --from {from}"));
        let page = reply.ok()[field].as_array().unwrap().clone();
        assert!(page.len() <= limit, "{page:?}");
        pages.push(page);
        match reply.json["next"].as_u64() {
            Some(next) => {
                assert!(next > from as u64);
                from = next as usize;
            }
            None => return pages,
        }
    }
}

#[test]
fn listings_go_a_page_at_a_time() {
    let appliance = Appliance::start();
    let (alice, bob) = (appliance.user("alice"), appliance.user("bob"));
    let bob_id = bob.cmd("whoami").ok()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.accept(&alice);
    let keys: Vec<String> = (0..3).map(|_| alice.create_key("--scope git")).collect();
    alice
        .cmd(&format!(
            "authorize --key-id {} --scope git --grantee {bob_id}",
            keys[1]
        ))
        .ok();

    // One page holds what it is asked to, and says where the next starts.
    let first = alice.cmd("keys --limit 2");
    assert_eq!(first.ok()["keys"].as_array().unwrap().len(), 2);
    assert_eq!(first.json["next"], 2);
    // Page after page, every key once, in order.
    let listed: Vec<String> = every_page(&alice, "keys", "keys", 2)
        .concat()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, keys);
    let granted = every_page(&bob, "keys", "keys", 1).concat();
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["key_id"], keys[1].as_str());
    assert_eq!(granted[0]["role"], "grantee");
    // The default page holds everything here; no next.
    assert!(alice.cmd("keys").ok()["next"].is_null());

    // A negotiation's history, by pages of offers.
    let opened = alice.cmd("log-offer --round 0 --from alice --type offer");
    let id = opened.ok()["negotiation_id"].as_str().unwrap().to_owned();
    for round in 1..4 {
        let (who, name) = if round % 2 == 1 {
            (&bob, "bob")
        } else {
            (&alice, "alice")
        };
        who.cmd(&format!(
            "log-offer --negotiation-id {id} --round {round} --from {name} --type counter"
        ))
        .ok();
    }
    let pages = every_page(
        &alice,
        &format!("history --negotiation-id {id}"),
        "offers",
        3,
    );
    let rounds: Vec<u64> = pages
        .concat()
        .iter()
        .map(|o| o["round"].as_u64().unwrap())
        .collect();
    assert_eq!((pages.len(), rounds), (2, vec![0, 1, 2, 3]));

    // Pages are bounded.
    for bad in [
        "keys --limit 0",
        "keys --limit 1001",
        "pending --limit 5000",
    ] {
        let message = alice.cmd(bad).failed_with("invalid_argument").to_owned();
        assert!(message.contains("1 to 1000"), "{bad}: {message}");
    }
}

/// Commands one SSH connection serves before the appliance closes it once idle (README,
/// "Security model").
const COMMANDS_PER_CONNECTION: usize = 4096;

#[test]
fn a_long_lived_connection_is_closed_once_idle_after_its_share_of_commands() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = appliance.client_config(&alice);
    runtime.block_on(async {
        // A client that never reconnects on its own, as a multiplexing OpenSSH master does not.
        let connection = sshsign::client::Connection::connect(&config)
            .await
            .unwrap()
            .reconnect_after(u64::MAX);
        let whoami = ["whoami".to_owned()];
        for n in 0..COMMANDS_PER_CONNECTION {
            let out = connection.run(&whoami, &[]).await.unwrap();
            assert_eq!(out.exit_status, 0, "command {n}");
        }
        // Its share served and nothing open: the appliance ends the connection...
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        // ...and the next command goes over a fresh one.
        let out = connection.run(&whoami, &[]).await.unwrap();
        assert_eq!(out.exit_status, 0);
        assert_eq!(connection.connections_opened().await, 2);
    });
}
