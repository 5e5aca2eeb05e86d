//! Human approval over REST and SSH: API keys, the REST contract (every status code), decisions
//! over SSH where a request allows them, quorum, expiry, and offline verification of the signed
//! decision with `sshsign verify-approval`.

use serde_json::{Value, json};

use crate::common::{Appliance, HttpReply, User, offline_check, write_file};

/// Makes an API key for `user` and returns its secret.
pub fn api_key(user: &User, scopes: &str) -> String {
    let made = user.cmd(&format!("api-key create --label ci --scopes {scopes}"));
    made.ok()["api_key"].as_str().unwrap().to_owned()
}

pub fn user_id(user: &User) -> String {
    user.cmd("whoami").ok()["user_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn post(appliance: &Appliance, key: &str, body: &Value) -> HttpReply {
    let auth = format!("Bearer {key}");
    appliance.http(
        "POST",
        "/api/v1/approvals/request",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

pub fn get(appliance: &Appliance, key: &str, path: &str) -> HttpReply {
    let auth = format!("Bearer {key}");
    appliance.http("GET", path, &[("Authorization", &auth)], b"")
}

/// Creates a request and returns the reply.
#[track_caller]
pub fn create(appliance: &Appliance, key: &str, body: Value) -> Value {
    let made = post(appliance, key, &body);
    assert_eq!(made.status, 201, "{:?}", made.json);
    made.json
}

/// Creates a request and returns its id.
#[track_caller]
fn request(appliance: &Appliance, key: &str, body: Value) -> String {
    create(appliance, key, body)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A request for `action` that `approver` approves over SSH at once: its id, and its status
/// reply with the signed decision.
pub fn decided_over_ssh(
    appliance: &Appliance,
    approver: &User,
    key: &str,
    action: &str,
) -> (String, HttpReply) {
    let id = request(
        appliance,
        key,
        json!({"action": action, "methods": ["ssh"]}),
    );
    assert_eq!(
        approver.cmd(&format!("approve --id {id}")).ok()["status"],
        "approved"
    );
    let decided = get(appliance, key, &format!("/api/v1/approvals/{id}"));
    (id, decided)
}

/// A request as `GET /api/v1/approvals/{id}` shows it to its owner.
pub fn status(appliance: &Appliance, key: &str, id: &str) -> Value {
    get(appliance, key, &format!("/api/v1/approvals/{id}")).json
}

#[test]
fn api_keys_are_shown_once_stored_hashed_and_revocable() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let made = alice.cmd("api-key create --label deploy-bot --scopes approval:create");
    let made = made.ok();
    let secret = made["api_key"].as_str().unwrap();
    assert!(
        secret.starts_with("sshsign_") && secret.len() >= 8 + 27,
        "{secret}"
    );
    assert_eq!(made["scopes"], json!(["approval:create"]));
    let id = made["id"].as_str().unwrap();

    // Listed without the secret, and the secret is not in the database in the clear.
    let listed = alice.cmd("api-keys");
    let listed = listed.ok();
    assert_eq!(listed["api_keys"][0]["id"], id);
    assert!(!listed.to_string().contains(secret));
    let found = appliance.stored_text(&[secret]);
    assert!(found.is_empty(), "{found:?}");

    // Works, then stops working the moment it is revoked; others cannot revoke it.
    assert_eq!(
        post(&appliance, secret, &json!({"action": "x"})).status,
        201
    );
    let bob = appliance.user("bob");
    bob.cmd(&format!("api-key revoke --id {id}"))
        .failed_with("unknown_api_key");
    alice.cmd(&format!("api-key revoke --id {id}")).ok();
    let refused = post(&appliance, secret, &json!({"action": "x"}));
    assert_eq!((refused.status, refused.code()), (401, "unauthorized"));
    alice
        .cmd(&format!("api-key revoke --id {id}"))
        .failed_with("api_key_revoked");
    assert!(alice.cmd("api-keys").ok()["api_keys"][0]["revoked_at"].is_string());
    alice
        .cmd("api-key create --label x --scopes approval:delete")
        .failed_with("invalid_argument");
}

#[test]
fn the_rest_contract_answers_each_status_code() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let key = api_key(&alice, "approval:create,approval:read");
    let id = created_in_the_seeds_shape(&appliance, &alice, &key);
    read_while_pending(&appliance, &key, &id);
    bad_bodies_are_400(&appliance, &key);
    missing_keys_are_401_and_missing_scopes_403(&appliance, &alice, &id);
    unknown_and_other_peoples_requests_are_404(&appliance, &key, &id);
    wrong_methods_sizes_and_types_are_405_413_415(&appliance, &key, &id);
    a_decided_request_is_409_over_ssh(&appliance, &alice, &key);
    // After all that, the server still serves.
    assert_eq!(appliance.http_get("/healthz").0, 200);
}

fn created_in_the_seeds_shape(appliance: &Appliance, alice: &User, key: &str) -> String {
    // 201: the seed's shape.
    let body = json!({"action": "Deploy v2.1.0 to production", "ttl_seconds": 3600,
                      "metadata": {"env": "prod", "sha": "abc123"}});
    let made = post(appliance, key, &body);
    assert_eq!(made.status, 201, "{:?}", made.json);
    assert_eq!(made.header("content-type"), Some("application/json"));
    let id = made.json["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("apr_"));
    assert_eq!(made.json["status"], "pending");
    assert_eq!(made.json["action"], "Deploy v2.1.0 to production");
    assert_eq!(made.json["metadata"]["sha"], "abc123");
    assert_eq!(made.json["methods"], json!(["passkey", "totp"]));
    // Addresses, not credentials: the approver's page and where to poll.
    let url = made.json["approval_url"].as_str().unwrap();
    assert!(
        url.ends_with(&format!("/approve/{id}?as={}", user_id(alice))),
        "{url}"
    );
    assert!(
        made.json["status_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/api/v1/approvals/{id}"))
    );
    assert!(
        !made.body.windows(5).any(|w| w == b"token"),
        "{:?}",
        made.json
    );
    let created = made.json["created_at"].as_str().unwrap();
    let expires = made.json["expires_at"].as_str().unwrap();
    assert!(expires > created);
    id
}

fn read_while_pending(appliance: &Appliance, key: &str, id: &str) {
    // 200: its status, to its owner.
    let status = get(appliance, key, &format!("/api/v1/approvals/{id}"));
    assert_eq!(status.status, 200);
    assert_eq!(status.json["status"], "pending");
    assert!(status.json["decision"].is_null());
    assert_eq!(status.json["totp_failures"], 0);
    // The public verify endpoint says there is nothing to verify yet.
    let (code, verify) = appliance.http_get(&format!("/api/v1/approvals/{id}/verify"));
    assert_eq!((code, verify["valid"].as_bool()), (200, Some(false)));
}

fn bad_bodies_are_400(appliance: &Appliance, key: &str) {
    // 400: each bad body, with a message that names the problem.
    for (body, needle) in [
        (json!({"action": ""}), "action"),
        (json!({"action": "x".repeat(501)}), "action"),
        (json!({"action": "x", "ttl_seconds": 59}), "ttl_seconds"),
        (
            json!({"action": "x", "ttl_seconds": 604_801}),
            "ttl_seconds",
        ),
        (json!({"action": "x", "metadata": [1]}), "metadata"),
        (json!({"action": "   "}), "action"),
        (
            json!({"action": format!("  {}", "x".repeat(499))}),
            "action",
        ),
        (json!({"action": "x", "threshold": 1.5}), "threshold"),
        (
            json!({"action": "x", "ttl_seconds": 3600.25}),
            "ttl_seconds",
        ),
        (json!({"action": "x", "approvers": []}), "approvers"),
        (
            json!({"action": "x", "methods": ["carrier-pigeon"]}),
            "carrier-pigeon",
        ),
        (json!({"action": "x", "methods": []}), "methods"),
        (json!({"action": "x", "colour": "red"}), "colour"),
        (json!({"ttl_seconds": 60}), "action"),
    ] {
        let refused = post(appliance, key, &body);
        assert_eq!(refused.status, 400, "{body}: {:?}", refused.json);
        let message = refused.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let auth = format!("Bearer {key}");
    let not_json = appliance.http(
        "POST",
        "/api/v1/approvals/request",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        b"{\"action\": ",
    );
    assert_eq!(
        (not_json.status, not_json.code()),
        (400, "invalid_argument")
    );
    let unknown_approver = post(
        appliance,
        key,
        &json!({"action": "x", "approvers": ["usr_nobody"]}),
    );
    assert_eq!(
        (unknown_approver.status, unknown_approver.code()),
        (400, "invalid_argument")
    );
    // 422: well-formed, and within the schema, but refused by a rule the schema states only in
    // words (the document lists 422 for it).
    for (body, needle) in [
        (
            json!({"action": "x", "metadata": {"a": "b".repeat(4100)}}),
            "metadata",
        ),
        (json!({"action": "x", "threshold": 2}), "threshold"),
        (
            json!({"action": "x", "callback_url": "http://127.0.0.1:9/hook"}),
            "callback_url",
        ),
        (
            json!({"action": "x", "callback_url": "ftp://example.com/"}),
            "callback_url",
        ),
        (
            json!({"action": "x", "callback_url": "http://93.184.216.34:99999/"}),
            "callback_url",
        ),
    ] {
        let refused = post(appliance, key, &body);
        assert_eq!(refused.status, 422, "{body}: {:?}", refused.json);
        assert_eq!(refused.code(), "invalid_argument");
        let message = refused.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    // JSON Schema integers may be written with a zero fraction; null is declared for the
    // optional members and means the default.
    let accepted = post(
        appliance,
        key,
        &json!({"action": "x", "threshold": 1.0, "ttl_seconds": 3600.0, "metadata": null,
                "approvers": null, "methods": null, "callback_url": null}),
    );
    assert_eq!(accepted.status, 201, "{:?}", accepted.json);
    // An approver named who does not exist: 404.
    let unknown = post(
        appliance,
        key,
        &json!({"action": "x", "approvers": ["usr_aaaaaaaaaaaaaaaaaaaaaaaaaa"]}),
    );
    assert_eq!((unknown.status, unknown.code()), (404, "unknown_user"));
}

fn missing_keys_are_401_and_missing_scopes_403(appliance: &Appliance, alice: &User, id: &str) {
    // 401: no key, a malformed header, a key that does not exist.
    for header in [
        "",
        "Bearer ",
        "Basic YWxpY2U6cHc=",
        "Bearer sshsign_AAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let headers: Vec<(&str, &str)> = if header.is_empty() {
            vec![("Content-Type", "application/json")]
        } else {
            vec![
                ("Authorization", header),
                ("Content-Type", "application/json"),
            ]
        };
        let refused = appliance.http(
            "POST",
            "/api/v1/approvals/request",
            &headers,
            br#"{"action":"x"}"#,
        );
        assert_eq!(
            (refused.status, refused.code()),
            (401, "unauthorized"),
            "{header}"
        );
        assert!(!String::from_utf8_lossy(&refused.body).contains("AAAA"));
    }
    // 403: a key without the scope.
    let read_only = api_key(alice, "approval:read");
    let refused = post(appliance, &read_only, &json!({"action": "x"}));
    assert_eq!((refused.status, refused.code()), (403, "forbidden"));
    let create_only = api_key(alice, "approval:create");
    let refused = get(appliance, &create_only, &format!("/api/v1/approvals/{id}"));
    assert_eq!((refused.status, refused.code()), (403, "forbidden"));
}

fn unknown_and_other_peoples_requests_are_404(appliance: &Appliance, key: &str, id: &str) {
    // 404: an unknown id, and someone else's request (indistinguishable from unknown).
    let bob = appliance.user("bob");
    let bobs = api_key(&bob, "approval:create,approval:read");
    for (key, path) in [
        (
            key,
            "/api/v1/approvals/apr_aaaaaaaaaaaaaaaaaaaaaaaaaa".to_owned(),
        ),
        (bobs.as_str(), format!("/api/v1/approvals/{id}")),
        (key, "/api/v1/nothing".to_owned()),
    ] {
        let refused = get(appliance, key, &path);
        assert_eq!(refused.status, 404, "{path}");
        assert!(!refused.code().is_empty());
    }
    let (code, _) = appliance.http_get("/api/v1/approvals/apr_aaaaaaaaaaaaaaaaaaaaaaaaaa/verify");
    assert_eq!(code, 404);
}

fn wrong_methods_sizes_and_types_are_405_413_415(appliance: &Appliance, key: &str, id: &str) {
    let auth = format!("Bearer {key}");
    // 405, 413 and 415, as JSON too.
    let wrong = appliance.http(
        "DELETE",
        &format!("/api/v1/approvals/{id}"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(
        (wrong.status, wrong.code()),
        (405, "http_method_not_allowed")
    );
    let huge = format!(
        r#"{{"action":"x","metadata":{{"a":"{}"}}}}"#,
        "b".repeat(20_000)
    );
    let too_big = post_raw(appliance, &auth, "application/json", huge.as_bytes());
    assert_eq!((too_big.status, too_big.code()), (413, "payload_too_large"));
    let form = post_raw(
        appliance,
        &auth,
        "application/x-www-form-urlencoded",
        b"action=x",
    );
    assert_eq!((form.status, form.code()), (415, "unsupported_media_type"));
}

fn a_decided_request_is_409_over_ssh(appliance: &Appliance, alice: &User, key: &str) {
    // 409: deciding a decided request (over SSH, where the request allows it).
    let ssh_ok = request(
        appliance,
        key,
        json!({"action": "rotate keys", "methods": ["ssh"]}),
    );
    alice.cmd(&format!("approve --id {ssh_ok}")).ok();
    let again = alice.cmd(&format!("approve --id {ssh_ok}"));
    again.failed_with("already_resolved");
}

fn post_raw(appliance: &Appliance, auth: &str, content_type: &str, body: &[u8]) -> HttpReply {
    appliance.http(
        "POST",
        "/api/v1/approvals/request",
        &[("Authorization", auth), ("Content-Type", content_type)],
        body,
    )
}

#[test]
fn an_ssh_decision_is_signed_by_the_token_and_verifies_offline() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let key = api_key(&alice, "approval:create,approval:read");
    let action = "Merge PR #42 into main";
    ssh_is_refused_where_the_request_does_not_allow_it(&appliance, &alice, &key, action);
    let id = approved_over_ssh(&appliance, &alice, &key, action);
    let (status, text) = the_decision_is_the_seeds_payload(&appliance, &alice, &key, &id, action);
    let verified = the_appliance_verifies_it(&appliance, &id);
    it_verifies_offline_and_nothing_else_does(&appliance, &id, action, &status, &text, &verified);
    the_log_has_request_vote_and_signing(&alice, &id);
}

fn ssh_is_refused_where_the_request_does_not_allow_it(
    appliance: &Appliance,
    alice: &User,
    key: &str,
    action: &str,
) {
    // Not allowed over SSH unless the request lists ssh; the refusal points at the page.
    let web_only = request(appliance, key, json!({"action": action}));
    let refused = alice.cmd(&format!("approve --id {web_only}"));
    let message = refused.failed_with("method_not_allowed");
    assert!(
        message.contains(&format!("/approve/{web_only}")),
        "{message}"
    );
}

fn approved_over_ssh(appliance: &Appliance, alice: &User, key: &str, action: &str) -> String {
    let id = request(
        appliance,
        key,
        json!({"action": action, "methods": ["passkey", "ssh"]}),
    );
    let pending = alice.cmd("pending");
    let listed = &pending.ok()["approvals"];
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str()),
        "{listed}"
    );
    let approved = alice.cmd(&format!("approve --id {id}"));
    assert_eq!(approved.ok()["status"], "approved");
    id
}

fn the_decision_is_the_seeds_payload(
    appliance: &Appliance,
    alice: &User,
    key: &str,
    id: &str,
    action: &str,
) -> (HttpReply, String) {
    let status = get(appliance, key, &format!("/api/v1/approvals/{id}"));
    let decision = &status.json["decision"];
    assert_eq!(decision["decision"], "approved");
    assert_eq!(decision["method"], "ssh");
    assert!(decision["id"].as_str().unwrap().starts_with("dec_"));
    // The payload is the seed's, in canonical form.
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(decision["signed_payload"].as_str().unwrap())
        .unwrap();
    let text = String::from_utf8(payload.clone()).unwrap();
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["rid"], id);
    assert_eq!(parsed["v"], 2);
    assert_eq!(parsed["nonce"].as_str().unwrap().len(), 32);
    // The seed's 64-bit fields stay; version 2 adds full SHA-256 bindings.
    let short = |t: &str| sshsign::approval::decision::short_hash(t);
    let full = |t: &str| sshsign::approval::decision::full_hash(t);
    assert_eq!(parsed["action"], short(action));
    assert_eq!(parsed["approver"], short(&user_id(alice)));
    assert_eq!(parsed["action_sha256"], full(action));
    assert_eq!(parsed["approver_sha256"], full(&user_id(alice)));
    assert_eq!(
        parsed["metadata_sha256"],
        sshsign::approval::decision::metadata_sha256(&Default::default())
    );
    assert_eq!(parsed["request_sha256"].as_str().unwrap().len(), 64);
    assert!(
        text.starts_with(r#"{"action":"#) && !text.contains(' '),
        "{text}"
    );
    (status, text)
}

fn the_appliance_verifies_it(appliance: &Appliance, id: &str) -> Value {
    // The public endpoint checks it against the appliance's key.
    let (code, verified) = appliance.http_get(&format!("/api/v1/approvals/{id}/verify"));
    assert_eq!(code, 200);
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["approved"], true, "{verified}");
    assert_eq!(verified["decision"], "approved");
    assert_eq!(verified["payload"]["rid"], id);
    verified
}

fn it_verifies_offline_and_nothing_else_does(
    appliance: &Appliance,
    id: &str,
    action: &str,
    status: &HttpReply,
    text: &str,
    verified: &Value,
) {
    use base64::Engine as _;
    // Offline, from the JWKS: passes, then fails on any change and on the wrong checks.
    let dir = tempfile::tempdir().unwrap();
    let jwks_file = appliance.save_jwks(dir.path());
    let decision_file = write_file(dir.path(), "decision.json", status.body.clone());
    let verify = |file: &std::path::Path, extra: &[&str]| {
        offline_check("verify-approval", &jwks_file, extra, file)
    };
    let empty = write_file(dir.path(), "metadata.json", "{}");
    let empty = empty.to_str().unwrap();
    let ok = verify(
        &decision_file,
        &[
            "--request-id",
            id,
            "--action",
            action,
            "--metadata",
            empty,
            "--method",
            "ssh",
        ],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let printed: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(printed["verified"], true);
    assert_eq!(printed["checked"].as_array().unwrap().len(), 8, "{printed}");
    let verify_reply = write_file(dir.path(), "verify.json", verified.to_string());
    assert!(
        verify(&verify_reply, &["--request-id", id])
            .status
            .success()
    );
    let refused_with = |extra: &[&str], code: i32, needle: &str| {
        let out = verify(&decision_file, extra);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
    };
    refused_with(
        &["--request-id", id, "--method", "passkey"],
        1,
        "not passkey",
    );
    refused_with(
        &["--action", "Merge PR #43 into main", "--metadata", empty],
        1,
        "another action",
    );
    let other_metadata = write_file(dir.path(), "other.json", r#"{"env": "prod"}"#);
    refused_with(
        &[
            "--action",
            action,
            "--metadata",
            other_metadata.to_str().unwrap(),
        ],
        1,
        "other metadata",
    );
    refused_with(&["--request-id", "apr_other"], 1, "not apr_other");
    refused_with(
        &["--request-id", id, "--approver", "usr_someoneelse"],
        1,
        "another approver",
    );
    // A mistyped flag, a stray argument, or no binding at all is a usage error, never a pass.
    refused_with(&["--request-id", id, "--aprover", "bob"], 2, "--aprover");
    refused_with(&["--request-id", id, "stray"], 2, "unexpected argument");
    refused_with(&[], 2, "--request-id");
    refused_with(&["--action", action], 2, "--metadata");
    let mut tampered = status.json.clone();
    let forged = text.replace("\"approved\"", "\"rejected\"");
    tampered["decision"]["signed_payload"] = base64::engine::general_purpose::STANDARD
        .encode(forged)
        .into();
    let tampered_file = write_file(dir.path(), "tampered.json", tampered.to_string());
    let refused = verify(&tampered_file, &["--request-id", id]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not verify"));
}

fn the_log_has_request_vote_and_signing(alice: &User, id: &str) {
    // The audit log has the request, the vote and the signing.
    let entries = alice.cmd("audit-entries");
    let actions: Vec<&str> = entries.ok()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["request_id"] == id)
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "approval_request",
            "approval_vote",
            "approval_decision_signed"
        ]
    );
}

#[test]
fn a_quorum_needs_distinct_approvers_and_a_rejection_closes_it() {
    let appliance = Appliance::start();
    let (alice, bob, carol) = (
        appliance.user("alice"),
        appliance.user("bob"),
        appliance.user("carol"),
    );
    let key = api_key(&alice, "approval:create,approval:read");
    bob.accept(&alice);
    carol.accept(&alice);
    let approvers = json!([user_id(&alice), user_id(&bob), user_id(&carol)]);
    let id = request(
        &appliance,
        &key,
        json!({"action": "wire 10k", "approvers": approvers, "threshold": 2, "methods": ["ssh"]}),
    );
    let dave = appliance.user("dave");
    dave.cmd(&format!("approve --id {id}"))
        .failed_with("unknown_request");

    let first = alice.cmd(&format!("approve --id {id}"));
    assert_eq!(first.ok()["status"], "pending");
    assert_eq!(first.ok()["votes"].as_array().unwrap().len(), 1);
    alice
        .cmd(&format!("approve --id {id}"))
        .failed_with("already_voted");
    let status = get(&appliance, &key, &format!("/api/v1/approvals/{id}"));
    assert_eq!(status.json["status"], "pending");
    assert!(status.json["decision"].is_null());

    let second = bob.cmd(&format!("approve --id {id}"));
    assert_eq!(second.ok()["status"], "approved");
    carol
        .cmd(&format!("deny --id {id}"))
        .failed_with("already_resolved");
    let (_, verified) = appliance.http_get(&format!("/api/v1/approvals/{id}/verify"));
    assert_eq!(verified["valid"], true);
    // The decision names the approver whose vote met the threshold.
    assert_eq!(
        verified["payload"]["approver"],
        sshsign::approval::decision::short_hash(&user_id(&bob))
    );

    // One rejection closes a request, with its reason, before the threshold is met.
    let id = request(
        &appliance,
        &key,
        json!({"action": "drop table", "approvers": approvers, "threshold": 2, "methods": ["ssh"]}),
    );
    alice.cmd(&format!("approve --id {id}")).ok();
    let closed = carol.cmd(&format!("deny --id {id} --reason 'not on a Friday'"));
    assert_eq!(closed.ok()["status"], "rejected");
    let status = get(&appliance, &key, &format!("/api/v1/approvals/{id}"));
    assert_eq!(status.json["decision"]["decision"], "rejected");
    assert_eq!(status.json["votes"][1]["reason"], "not on a Friday");
    bob.cmd(&format!("approve --id {id}"))
        .failed_with("already_resolved");
}

#[test]
fn an_expired_request_cannot_be_decided() {
    let mut appliance = Appliance::start();
    let alice = appliance.user("alice");
    let key = api_key(&alice, "approval:create,approval:read");
    let id = request(
        &appliance,
        &key,
        json!({"action": "x", "ttl_seconds": 60, "methods": ["ssh"]}),
    );
    // Two minutes later, by the server's clock.
    appliance.restart_with(&[
        (
            "LD_PRELOAD",
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        ),
        ("FAKETIME", "+2m"),
        ("DONT_FAKE_MONOTONIC", "1"),
    ]);
    let alice = alice.at(&appliance);
    alice
        .cmd(&format!("approve --id {id}"))
        .failed_with("request_expired");
    let status = get(&appliance, &key, &format!("/api/v1/approvals/{id}"));
    assert_eq!(status.json["status"], "expired");
    let (_, verified) = appliance.http_get(&format!("/api/v1/approvals/{id}/verify"));
    assert_eq!(verified["valid"], false);
    assert_eq!(verified["approved"], false);
    // The offline verifier says so and fails.
    let dir = tempfile::tempdir().unwrap();
    let jwks_file = appliance.save_jwks(dir.path());
    let file = write_file(dir.path(), "expired.json", status.body.clone());
    let out = offline_check("verify-approval", &jwks_file, &["--request-id", &id], &file);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the request is expired"));
    assert!(
        alice.cmd("pending").ok()["approvals"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn each_api_key_has_its_own_rate_limit() {
    let appliance = Appliance::start_with(&[
        ("SSHSIGN_HTTP_RATE_PER_KEY", "10"),
        ("SSHSIGN_HTTP_RATE_PER_IP", "6000"),
    ]);
    let alice = appliance.user("alice");
    let (busy, calm) = (
        api_key(&alice, "approval:create"),
        api_key(&alice, "approval:create"),
    );
    let statuses: Vec<u16> = (0..11)
        .map(|_| post(&appliance, &busy, &json!({"action": "x"})).status)
        .collect();
    assert_eq!(statuses[..10], [201; 10], "{statuses:?}");
    let limited = post(&appliance, &busy, &json!({"action": "x"}));
    assert_eq!((limited.status, limited.code()), (429, "rate_limited"));
    assert!(limited.header("retry-after").is_some());
    assert_eq!(post(&appliance, &calm, &json!({"action": "x"})).status, 201);
    // A wrong key is refused as unauthorized, not counted against anyone.
    let wrong = post(&appliance, "sshsign_nope", &json!({"action": "x"}));
    assert_eq!(wrong.status, 401);
}

/// Many clients creating and deciding at once: every request is answered and recorded once, and
/// every decision verifies. sled's own flush pool once deadlocked here under 16 concurrent
/// creates; see `store::flusher`.
#[test]
fn concurrent_creates_and_decisions_all_complete() {
    const CLIENTS: usize = 24;
    const EACH: usize = 40;
    let appliance = Appliance::start_with(&[
        ("SSHSIGN_HTTP_RATE_PER_IP", "1000000"),
        ("SSHSIGN_HTTP_RATE_PER_KEY", "1000000"),
        ("SSHSIGN_QUOTAS", "approval_requests=1000000/h"),
    ]);
    let alice = appliance.user("alice");
    let key = api_key(&alice, "approval:create,approval:read");
    let ids: Vec<String> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (appliance, key) = (&appliance, &key);
                scope.spawn(move || {
                    (0..EACH)
                        .map(|n| {
                            let body = json!({"action": format!("deploy {client}.{n}"), "methods": ["ssh"]});
                            let made = post(appliance, key, &body);
                            assert_eq!(made.status, 201, "{:?}", made.json);
                            made.json["id"].as_str().unwrap().to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), CLIENTS * EACH);

    // Decide them from several SSH clients at once, each request once.
    std::thread::scope(|scope| {
        for share in ids.chunks(ids.len().div_ceil(6)) {
            let alice = &alice;
            scope.spawn(move || {
                for id in share {
                    assert_eq!(
                        alice.cmd(&format!("approve --id {id}")).ok()["status"],
                        "approved"
                    );
                }
            });
        }
    });
    for id in &ids {
        let reply = appliance
            .http_get(&format!("/api/v1/approvals/{id}/verify"))
            .1;
        assert_eq!(reply["valid"], true, "{reply}");
        assert_eq!(reply["decision"], "approved", "{reply}");
    }
    assert_eq!(
        alice.cmd("pending").ok()["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "pending")
            .count(),
        0
    );
}

#[test]
fn a_decision_binds_the_whole_request_and_the_verifier_checks_what_it_is_told() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let key = api_key(&alice, "approval:create,approval:read");
    // Two actions whose 64-bit seed hashes collide (found in ten minutes on two cores).
    let production = "Deploy release to production, ticket #2f94db987d8c952d";
    let staging = "Deploy release to staging, ticket #1632177a34372ff6";
    let short = sshsign::approval::decision::short_hash;
    assert_eq!(short(production), short(staging));
    let decided = |action: &str, verdict: &str| {
        let id = request(
            &appliance,
            &key,
            json!({"action": action, "methods": ["ssh"], "metadata": {"ticket": 7}}),
        );
        alice.cmd(&format!("{verdict} --id {id}")).ok();
        let status = get(&appliance, &key, &format!("/api/v1/approvals/{id}"));
        (id, status)
    };
    let (staging_id, staging_status) = decided(staging, "approve");
    let (production_id, _) = decided(production, "approve");
    let dir = tempfile::tempdir().unwrap();
    let jwks_file = appliance.save_jwks(dir.path());
    let metadata = write_file(dir.path(), "metadata.json", r#"{ "ticket": 7 }"#);
    let metadata = metadata.to_str().unwrap();
    let staging_file = write_file(dir.path(), "staging.json", staging_status.body.clone());
    let check = |file: &std::path::Path, extra: &[&str]| {
        let out = offline_check("verify-approval", &jwks_file, extra, file);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The staging approval verifies for staging, by request or by action and metadata ...
    assert_eq!(
        check(&staging_file, &["--request-id", &staging_id]).0,
        Some(0)
    );
    assert_eq!(
        check(
            &staging_file,
            &["--action", staging, "--metadata", metadata]
        )
        .0,
        Some(0)
    );
    // ... and is told apart from production either way, though the seed's field is the same.
    let (code, why) = check(&staging_file, &["--request-id", &production_id]);
    assert_eq!(code, Some(1), "{why}");
    let (code, why) = check(
        &staging_file,
        &["--action", production, "--metadata", metadata],
    );
    assert_eq!(
        (code, why.contains("another action")),
        (Some(1), true),
        "{why}"
    );

    // A rejection is signed, and valid, but never passes as an approval.
    let (rejected_id, rejected_status) = decided("Drop the database", "deny");
    assert_eq!(rejected_status.json["decision"]["decision"], "rejected");
    let (_, verified) = appliance.http_get(&format!("/api/v1/approvals/{rejected_id}/verify"));
    assert_eq!(
        (verified["valid"].as_bool(), verified["approved"].as_bool()),
        (Some(true), Some(false))
    );
    let rejected_file = write_file(dir.path(), "rejected.json", rejected_status.body.clone());
    let (code, why) = check(&rejected_file, &["--request-id", &rejected_id]);
    assert_eq!(code, Some(1));
    assert!(why.contains("rejected, not an approval"), "{why}");
    let verify_file = write_file(dir.path(), "verify.json", verified.to_string());
    assert_eq!(
        check(&verify_file, &["--request-id", &rejected_id]).0,
        Some(1)
    );
}

/// `request-approval` over SSH: the request belongs to the SSH key's user and binds that key;
/// `get-envelope --wait` returns when it is decided; `jwks` over SSH is the published JWKS, and
/// the decision verifies offline against it. Bad flags are refused in words.
#[test]
fn an_approval_asked_over_ssh_is_waited_for_and_verifies_against_the_jwks_read_over_ssh() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let bob = appliance.user("bob");
    let bob_id = user_id(&bob);
    let stranger = appliance.user("carol");

    // Bob has not accepted alice yet: nothing reaches him.
    let ask = format!(
        r#"request-approval --action "Deploy v2 to production" --metadata {{"env": "prod"}} --approver {bob_id} --method ssh --ttl 15m"#
    );
    alice.cmd(&ask).failed_with("not_accepted");
    bob.accept(&alice);
    let created = alice.cmd(&ask).ok().clone();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("apr_"), "{created}");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["approvers"], json!([bob_id]));
    assert_eq!(created["methods"], json!(["ssh"]));
    let page = created["approval_urls"][0]["url"].as_str().unwrap();
    assert!(
        page.ends_with(&format!("/approve/{id}?as={bob_id}")),
        "{page}"
    );
    // The page names who asked, with the SSH key that asked.
    let shown = appliance.http("GET", &format!("/approve/{id}"), &[], b"");
    assert_eq!(shown.status, 200);
    let shown = String::from_utf8_lossy(&shown.body);
    let fingerprint = alice.cmd("whoami").ok()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        shown.contains(&format!("(SSH key {fingerprint})")),
        "{shown}"
    );
    // Bob sees it; the stranger does not.
    let pending = bob.cmd("pending").ok().clone();
    assert_eq!(pending["approvals"][0]["id"], id.as_str(), "{pending}");
    stranger
        .cmd(&format!("get-envelope --id {id}"))
        .failed_with("unknown_request");

    // A read that waits returns on the decision, not at the end of its wait.
    let waiter = {
        let alice = alice.clone();
        let id = id.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let read = alice.cmd(&format!("get-envelope --id {id} --wait 30"));
            (read, started.elapsed())
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    bob.cmd(&format!("approve --id {id}")).ok();
    let (read, took) = waiter.join().unwrap();
    let decided = read.ok().clone();
    assert_eq!(decided["status"], "approved", "{decided}");
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");

    // The JWKS over SSH is the one served over HTTP, and the decision verifies against it.
    let jwks = alice.cmd("jwks").ok().clone();
    let (status, served) = appliance.http_get("/.well-known/jwks.json");
    assert_eq!(status, 200);
    assert_eq!(jwks, served);
    let dir = appliance.dir.path();
    let jwks_file = write_file(dir, "ssh-jwks.json", jwks.to_string());
    let kept = write_file(dir, "decided.json", decided.to_string());
    let checked = offline_check(
        "verify-approval",
        &jwks_file,
        &[
            "--request-id",
            &id,
            "--approver",
            &bob_id,
            "--method",
            "ssh",
        ],
        &kept,
    );
    assert!(checked.status.success(), "{checked:?}");
    the_log_has_request_vote_and_signing(&alice, &id);

    // Bad flags: clear errors, nothing made.
    let before = alice.cmd("pending").ok()["requested"].clone();
    for (command, code) in [
        ("request-approval --action ''", "invalid_argument"),
        (
            "request-approval --action x --metadata '[1]'",
            "invalid_argument",
        ),
        ("request-approval --action x --ttl 10s", "invalid_argument"),
        (
            "request-approval --action x --threshold 2",
            "invalid_argument",
        ),
        (
            "request-approval --action x --approver nobody",
            "invalid_argument",
        ),
        (
            "request-approval --action x --method carrier-pigeon",
            "invalid_usage",
        ),
        ("get-envelope --id apr_x --wait 31", "invalid_usage"),
    ] {
        let reply = alice.cmd(command);
        assert_ne!(reply.status, 0, "{command}: {reply:?}");
        assert_eq!(reply.error_code(), code, "{command}: {reply:?}");
    }
    assert_eq!(alice.cmd("pending").ok()["requested"], before);
}
