//! The HTTP side: health, the appliance's public keys, JWKS, key lookup; security headers,
//! header timeouts, rate limits, trusted proxies and HTTPS.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;

use crate::common::{Appliance, clean_command, connect_from, provision};

#[test]
fn health_keys_and_jwks() {
    let appliance = Appliance::start();
    let (status, health) = appliance.http_get("/healthz");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["token"]["label"], appliance.store.label.as_str());
    // The module of the pass: SoftHSMv2, or kryoptic under SSHSIGN_TEST_TOKEN=kryoptic.
    assert_eq!(
        health["token"]["module"],
        appliance.store.module.display().to_string()
    );
    // Token usage counts every call, the health check's own random draw included.
    let calls = health["token_usage"]["calls"].as_u64().unwrap();
    let (_, again) = appliance.http_get("/healthz");
    assert!(again["token_usage"]["calls"].as_u64().unwrap() > calls);
    assert!(again["token_usage"]["busy_seconds"].as_f64().unwrap() > 0.0);

    let (status, info) = appliance.http_get("/api/v1/appliance");
    assert_eq!(status, 200);
    assert_eq!(
        info["ssh_host_key"]["fingerprint"],
        appliance.host_key_fingerprint.as_str()
    );
    let shown: serde_json::Value =
        serde_json::from_slice(&provision(&appliance.store, &["show"]).stdout).unwrap();
    assert_eq!(info["keys"], shown["appliance_keys"]);
    // The audit log's verifier key is known from the token alone, before anyone connects, and
    // is the one the running log signs under.
    let auditor = appliance.user("auditor");
    auditor.create_key("");
    assert_eq!(
        shown["audit_verifier_key"],
        auditor.cmd("audit-checkpoint").ok()["verifier_key"]
    );

    // The JWK's x is the decision key's public key.
    let (status, jwks) = appliance.http_get("/.well-known/jwks.json");
    assert_eq!(status, 200);
    let jwk = &jwks["keys"][0];
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().unwrap())
        .unwrap();
    let decision = info["keys"][0]["public_key"].as_str().unwrap();
    assert_eq!(
        sshsign::pubkey::parse_ed25519(decision).unwrap().to_vec(),
        x
    );

    let alice = appliance.user("alice");
    let key_id = alice.create_key("");
    let (status, key) = appliance.http_get(&format!("/api/v1/keys/{key_id}"));
    assert_eq!(status, 200);
    assert_eq!(key["status"], "active");
    assert!(key.get("owner").is_none() && key.get("token_object_id").is_none());
    let (status, missing) = appliance.http_get("/api/v1/keys/ak_aaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "unknown_key");
    assert_eq!(appliance.http_get("/api/v1/keys/..%2f").0, 404);
}

#[test]
fn every_response_carries_the_security_headers() {
    let appliance = Appliance::start();
    for path in ["/healthz", "/api/v1/nothing", "/.well-known/jwks.json"] {
        let reply = appliance.http("GET", path, &[], b"");
        let csp = reply.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        // Plain HTTP on loopback: no HSTS.
        assert_eq!(reply.header("strict-transport-security"), None);
    }
}

#[test]
fn a_silent_or_trickling_client_is_dropped() {
    let appliance = Appliance::start_with(&[("SSHSIGN_HTTP_HEADER_TIMEOUT", "1")]);
    let started = std::time::Instant::now();
    // One sends half a request line and stops; another trickles a header byte by byte.
    let mut silent = TcpStream::connect(appliance.http_addr).unwrap();
    silent.write_all(b"GET /healthz HT").unwrap();
    let mut trickle = TcpStream::connect(appliance.http_addr).unwrap();
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        .unwrap();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(300));
        if trickle.write_all(b"a").is_err() {
            break;
        }
    }
    for stream in [&mut silent, &mut trickle] {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        // Closed by the server (EOF or reset), not by our read timeout.
        let _ = stream.read_to_end(&mut rest);
        assert!(
            !String::from_utf8_lossy(&rest).contains("200 OK"),
            "{rest:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(appliance.http_get("/healthz").0, 200);
    // A head larger than the limit is refused.
    let huge = "a".repeat(40_000);
    let reply = appliance.http("GET", "/healthz", &[("X-Huge", &huge)], b"");
    assert_eq!(reply.status, 431);
}

#[test]
fn rate_limits_apply_per_address_and_forwarded_addresses_only_from_trusted_proxies() {
    let appliance = Appliance::start_with(&[("SSHSIGN_HTTP_RATE_PER_IP", "10")]);
    // A burst of 10, then 429 with Retry-After, as JSON.
    let statuses: Vec<u16> = (0..12).map(|_| appliance.http_get("/healthz").0).collect();
    assert_eq!(statuses[..10], [200; 10]);
    let limited = appliance.http("GET", "/healthz", &[], b"");
    assert_eq!((limited.status, limited.code()), (429, "rate_limited"));
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=7).contains(&retry), "{retry}");
    // A forged X-Forwarded-For does not buy a fresh budget.
    let forged = appliance.http(
        "GET",
        "/healthz",
        &[("X-Forwarded-For", "203.0.113.9")],
        b"",
    );
    assert_eq!(forged.status, 429);

    // Behind a trusted proxy (loopback here), each forwarded client has its own budget.
    let proxied = Appliance::start_with(&[
        ("SSHSIGN_HTTP_RATE_PER_IP", "10"),
        ("SSHSIGN_TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    for client in ["203.0.113.1", "203.0.113.2"] {
        let forwarded = [("X-Forwarded-For", client)];
        let statuses: Vec<u16> = (0..11)
            .map(|_| proxied.http("GET", "/healthz", &forwarded, b"").status)
            .collect();
        assert_eq!(statuses[..10], [200; 10], "{client}");
        assert_eq!(statuses[10], 429, "{client}");
    }
}

/// The appliance's HTTP connections per source (README, "Security model").
const HTTP_PER_SOURCE: usize = 64;

/// Whether the server answers a request on `stream` (false: it closed the connection unread).
fn answers(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    reply.starts_with(b"HTTP/1.1 200")
}

#[test]
fn connections_are_capped_per_source_except_from_trusted_proxies() {
    let appliance = Appliance::start_with(&[("SSHSIGN_HTTP_HEADER_TIMEOUT", "30")]);
    // One source takes its share of connections and sends nothing.
    let mut held: Vec<TcpStream> = (0..HTTP_PER_SOURCE)
        .map(|_| TcpStream::connect(appliance.http_addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // One more from it is closed unanswered...
    let mut refused = TcpStream::connect(appliance.http_addr).unwrap();
    assert!(!answers(&mut refused));
    // ...while another source is served,
    assert!(answers(&mut connect_from("127.0.0.2", appliance.http_addr)));
    // and a slot given back is free again.
    held.pop();
    std::thread::sleep(Duration::from_millis(300));
    assert!(answers(
        &mut TcpStream::connect(appliance.http_addr).unwrap()
    ));
    drop(held);

    // A trusted proxy carries everyone's connections: it is not capped per source.
    let proxied = Appliance::start_with(&[
        ("SSHSIGN_HTTP_HEADER_TIMEOUT", "30"),
        ("SSHSIGN_TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    let _held: Vec<TcpStream> = (0..HTTP_PER_SOURCE)
        .map(|_| TcpStream::connect(proxied.http_addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(answers(&mut TcpStream::connect(proxied.http_addr).unwrap()));
}

/// Passkey prompts open at once from one source (README, "Security model").
const CEREMONIES_PER_SOURCE: usize = 32;

#[test]
fn passkey_prompts_are_counted_per_source() {
    let appliance = Appliance::start();
    let json = [("Content-Type", "application/json")];
    let login = |from: &str| appliance.http_from(from, "POST", "/login/options", &json, b"{}");
    for _ in 0..CEREMONIES_PER_SOURCE {
        let opened = login("127.0.0.1");
        assert_eq!(opened.status, 200, "{}", opened.json);
        assert!(opened.json["options"]["publicKey"]["challenge"].is_string());
    }
    // One source has all its prompts open: the next is refused, with the limit in words.
    let refused = login("127.0.0.1");
    assert_eq!((refused.status, refused.code()), (429, "quota_exceeded"));
    let message = refused.json["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("at most 32 passkey prompts"), "{message}");
    // Another source still gets its prompt.
    assert_eq!(login("127.0.0.2").status, 200);
}

#[test]
fn https_is_served_from_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = clean_command("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ed25519",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let appliance = Appliance::start_with(&[
        ("SSHSIGN_HTTP_TLS_CERT", &cert_s),
        ("SSHSIGN_HTTP_TLS_KEY", &key_s),
    ]);
    let port = appliance.http_addr.port();
    let curl = |extra: &[&str]| {
        clean_command("curl")
            .args(["-sS", "--max-time", "10", "-D", "-", "--resolve"])
            .arg(format!("localhost:{port}:127.0.0.1"))
            .args(extra)
            .arg(format!("https://localhost:{port}/healthz"))
            .output()
            .unwrap()
    };
    let ok = curl(&["--cacert", &cert_s]);
    let text = String::from_utf8_lossy(&ok.stdout).to_lowercase();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("strict-transport-security: max-age="),
        "{text}"
    );
    assert!(text.contains("\"status\":\"ok\""), "{text}");
    // Without the certificate pinned, the client refuses; plain HTTP gets nothing useful.
    assert!(!curl(&[]).status.success());
    let mut plain = TcpStream::connect(appliance.http_addr).unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
}

#[test]
fn the_openapi_document_is_served_and_matches_what_the_api_answers() {
    let appliance = Appliance::start();
    let (status, served) = appliance.http_get("/api/v1/openapi.json");
    assert_eq!(status, 200);
    let file: serde_json::Value =
        serde_json::from_str(include_str!("../../src/web/openapi.json")).unwrap();
    assert_eq!(served, file);
    assert_eq!(served["openapi"], "3.1.0");
    let paths = served["paths"].as_object().unwrap();
    let documented = |path: &str, method: &str| -> Vec<u16> {
        paths[path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is not documented"))
            .keys()
            .map(|k| k.parse().unwrap())
            .collect()
    };
    assert_eq!(
        documented("/api/v1/approvals/request", "post"),
        [201, 400, 401, 403, 404, 413, 415, 422, 429]
    );
    // Every documented GET answers with a documented status, with and without a key.
    let alice = appliance.user("alice");
    let key = crate::approvals::api_key(&alice, "approval:create,approval:read");
    let id = crate::approvals::create(&appliance, &key, serde_json::json!({"action": "x"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = format!("Bearer {key}");
    for (path, operations) in paths {
        if operations.get("get").is_none() {
            continue;
        }
        let concrete = path.replace("{id}", &id).replace("{key_id}", "key_unknown");
        for headers in [vec![], vec![("Authorization", auth.as_str())]] {
            let reply = appliance.http("GET", &concrete, &headers, b"");
            assert!(
                documented(path, "get").contains(&reply.status),
                "GET {concrete} answered {} ({:?})",
                reply.status,
                reply.json
            );
        }
    }
    // Every schema reference resolves.
    let text = served.to_string();
    for reference in text.split("\"$ref\":\"#/").skip(1) {
        let pointer = format!("/{}", &reference[..reference.find('"').unwrap()]);
        assert!(
            served.pointer(&pointer).is_some(),
            "{pointer} does not resolve"
        );
    }
}
