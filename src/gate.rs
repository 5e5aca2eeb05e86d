//! `sshsign approval request`: a gate for pipelines. It asks the appliance for a person's
//! decision over the REST API with an API key, prints the approval page's address, waits by
//! long polling (`GET /api/v1/approvals/{id}?wait=30`, no busy loop, no webhook to receive), and
//! passes only a decision that verifies offline against the appliance's decision keys and is
//! bound to this request, its action and its metadata.
//!
//! Exit status: [`APPROVED`] 0, [`REFUSED`] 1 (rejected, a decision that does not verify, or
//! the appliance could not be asked), [`USAGE`] 2, [`EXPIRED`] 3 (the request expired, or
//! `--timeout` passed first).

use std::time::Duration;

use bytes::Bytes;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Map, Value, json};

use crate::verifier::{self, Expected, TrustedKeys};
use crate::webhook::client::{self as http, Target};
use crate::webhook::ssrf::Policy;

pub const APPROVED: i32 = 0;
pub const REFUSED: i32 = 1;
pub const USAGE: i32 = 2;
pub const EXPIRED: i32 = 3;

/// The most of a reply the gate reads.
const MAX_REPLY: usize = 1 << 20;
/// One long poll: what the appliance allows, and a margin for the answer to arrive.
const POLL: u64 = 30;
const POLL_MARGIN: Duration = Duration::from_secs(15);

/// What to ask, and how to wait.
#[derive(Debug)]
pub struct Ask {
    /// The appliance's base URL (`https://sign.example.com`).
    pub url: String,
    pub api_key: SecretString,
    pub action: String,
    pub metadata: Map<String, Value>,
    pub approvers: Vec<String>,
    pub threshold: Option<u32>,
    /// How approvers may prove themselves (`passkey`, `totp`, `ssh`); empty: the default.
    pub methods: Vec<String>,
    pub ttl: Option<Duration>,
    /// `None`: ask and return at once.
    pub wait: Option<Duration>,
    /// The decision keys to trust; `None` reads the appliance's JWKS when the decision comes.
    pub jwks: Option<Value>,
}

/// What came of it: the exit status, and the document to keep (the request as last read).
#[derive(Debug)]
pub struct Outcome {
    pub status: i32,
    pub document: Value,
}

fn outcome(status: i32, document: Value) -> Outcome {
    Outcome { status, document }
}

struct Api {
    base: Target,
    authorization: SecretString,
}

impl Api {
    fn new(url: &str, key: &SecretString) -> Result<Api, String> {
        let mut base = Target::parse(url).map_err(|e| format!("--url {url}: {e}"))?;
        if base.path.contains('?') {
            return Err(format!(
                "--url {url}: the appliance's address takes no query"
            ));
        }
        base.path = base.path.trim_end_matches('/').to_owned();
        // The API key is a bearer credential: never in clear across a network.
        let loopback = base.host == "localhost"
            || base
                .host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !base.https && !loopback {
            return Err(format!(
                "--url {url}: the API key goes only over HTTPS (http:// only to this machine)"
            ));
        }
        let authorization = SecretString::from(format!("Bearer {}", key.expose_secret()));
        Ok(Api {
            base,
            authorization,
        })
    }

    /// `method path` with the API key; the answer's status and JSON body.
    async fn call(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<&Value>,
        within: Duration,
    ) -> Result<(u16, Value), String> {
        let mut target = self.base.clone();
        target.path = format!("{}{path}", self.base.path);
        let headers = [(
            "authorization",
            self.authorization.expose_secret().to_owned(),
        )];
        let body = body.map(|b| Bytes::from(b.to_string()));
        let answer = http::call(
            method,
            &target,
            &Policy::anywhere(),
            &headers,
            body,
            MAX_REPLY,
            within,
        )
        .await
        .map_err(|e| format!("cannot reach the appliance at {}: {e}", self.base.host))?;
        if answer.truncated {
            return Err(format!(
                "{path}: the reply is longer than {MAX_REPLY} bytes"
            ));
        }
        let json = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        Ok((answer.status, json))
    }
}

/// The appliance's error, in words.
fn refusal(status: u16, body: &Value) -> String {
    match (
        body["error"]["code"].as_str(),
        body["error"]["message"].as_str(),
    ) {
        (Some(code), Some(message)) => {
            format!("the appliance refused ({status} {code}): {message}")
        }
        _ => format!("the appliance answered HTTP {status}"),
    }
}

/// Asks, and with `wait`, waits for the decision and checks it; `say` hears, as they happen,
/// the lines for the person watching the pipeline (the approval pages first).
pub async fn request(ask: Ask, mut say: impl FnMut(&str)) -> Outcome {
    let api = match Api::new(&ask.url, &ask.api_key) {
        Ok(api) => api,
        Err(e) => {
            say(&e);
            return outcome(USAGE, Value::Null);
        }
    };
    let mut body = json!({"action": ask.action, "metadata": ask.metadata});
    if !ask.approvers.is_empty() {
        body["approvers"] = json!(ask.approvers);
    }
    if !ask.methods.is_empty() {
        body["methods"] = json!(ask.methods);
    }
    if let Some(threshold) = ask.threshold {
        body["threshold"] = json!(threshold);
    }
    if let Some(ttl) = ask.ttl {
        body["ttl_seconds"] = json!(ttl.as_secs());
    }
    let quick = Duration::from_secs(15);
    let created = match api
        .call(
            hyper::Method::POST,
            "/api/v1/approvals/request",
            Some(&body),
            quick,
        )
        .await
    {
        Ok((201, created)) => created,
        Ok((status, body)) => {
            say(&refusal(status, &body));
            return outcome(REFUSED, Value::Null);
        }
        Err(e) => {
            say(&e);
            return outcome(REFUSED, Value::Null);
        }
    };
    let Some(id) = created["id"].as_str().map(str::to_owned) else {
        say("the appliance's reply names no request");
        return outcome(REFUSED, Value::Null);
    };
    say(&format!("approval requested: {id}"));
    for page in created["approval_urls"].as_array().into_iter().flatten() {
        say(&format!(
            "  {} decides at {}",
            page["approver"].as_str().unwrap_or("an approver"),
            page["url"].as_str().unwrap_or("")
        ));
    }
    let Some(wait) = ask.wait else {
        return outcome(APPROVED, created);
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut document = created;
    while document["status"] == "pending" {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            say(&format!(
                "no decision within {}: still pending",
                humantime::format_duration(wait)
            ));
            return outcome(EXPIRED, document);
        }
        let seconds = left.as_secs().clamp(1, POLL);
        let path = format!("/api/v1/approvals/{id}?wait={seconds}");
        let within = Duration::from_secs(seconds) + POLL_MARGIN;
        match api.call(hyper::Method::GET, &path, None, within).await {
            Ok((200, read)) => document = read,
            // Too many reads: the answer says when to come back; wait a little.
            Ok((429, _)) => tokio::time::sleep(Duration::from_secs(1).min(left)).await,
            Ok((status, body)) => {
                say(&refusal(status, &body));
                return outcome(REFUSED, document);
            }
            Err(e) => {
                // The network failed during a long wait: try again shortly, until the deadline.
                say(&format!("{e}; asking again"));
                tokio::time::sleep(Duration::from_secs(2).min(left)).await;
            }
        }
    }
    let status = document["status"].as_str().unwrap_or("").to_owned();
    match status.as_str() {
        "approved" => {}
        "expired" => {
            say(&format!("{id} expired without a decision"));
            return outcome(EXPIRED, document);
        }
        "rejected" => {
            let reason = document["decision"]["reason"]
                .as_str()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            say(&format!("{id} was rejected{reason}"));
            return outcome(REFUSED, document);
        }
        other => {
            say(&format!("{id} is {other}, not approved"));
            return outcome(REFUSED, document);
        }
    }
    // Approved: believe it only as signed, by a decision key, for this request and these terms.
    let jwks = match ask.jwks {
        Some(jwks) => jwks,
        None => match api
            .call(hyper::Method::GET, "/.well-known/jwks.json", None, quick)
            .await
        {
            Ok((200, jwks)) => jwks,
            Ok((status, body)) => {
                say(&refusal(status, &body));
                return outcome(REFUSED, document);
            }
            Err(e) => {
                say(&e);
                return outcome(REFUSED, document);
            }
        },
    };
    let keys = match TrustedKeys::from_jwks(&jwks) {
        Ok(keys) => keys,
        Err(e) => {
            say(&format!("the JWKS: {e}"));
            return outcome(REFUSED, document);
        }
    };
    let expected = Expected {
        request_id: Some(id.clone()),
        action: Some((ask.action, ask.metadata)),
        approver: None,
        method: None,
    };
    match verifier::approval(&document, &keys, &expected) {
        Ok(report) => {
            say(&format!(
                "{id} approved; the decision verifies offline: {}",
                report.checked.join("; ")
            ));
            outcome(APPROVED, document)
        }
        Err(refusal) => {
            say(&refusal.0);
            outcome(REFUSED, document)
        }
    }
}
