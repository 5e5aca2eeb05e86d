//! `sshsign mcp`: a Model Context Protocol server over stdio, for agent hosts (Claude Desktop,
//! an IDE, LangChain or the OpenAI Agents SDK through their MCP adapters).
//!
//! It speaks to the appliance as the `sshsign` client does: the same configuration, the same
//! host-key pinning, the user's own SSH key, and one [`Session`] channel that carries every
//! tool's commands. Its tools are the appliance's commands for agents (sign, ask for an
//! approval, read and wait for a decision, check one offline, list keys, prove an audit entry).
//!
//! The protocol is the MCP specification of 2025-11-25 (and the handshake versions before it):
//!
//! - A request that needs a person (a co-signature, an approval) is shown to the client's user
//!   by **URL-mode elicitation** when the client declares it: the approval page's address, which
//!   is a pointer and never a credential. The tool result carries the address too, so a client
//!   without elicitation (or a user who dismissed it) still has it. When this server later sees
//!   the request decided, it sends `notifications/elicitation/complete`.
//! - `wait_for_approval` waits by long polling the appliance (`get-envelope --wait`), sends
//!   `notifications/progress` after each round when the call carries a progress token, and stops
//!   at once when the client cancels. Tool calls run concurrently, so a wait never holds up the
//!   stdio loop or another call.
//! - Failures the model should see (a refusal, a bad argument) are tool results with `isError`,
//!   carrying the appliance's error code and message; nothing secret is ever in a result (page
//!   addresses, request ids, signatures and public keys are not secrets).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, CustomNotification, Implementation, ProgressNotificationParam, ProtocolVersion,
    RequestMetaObject, ServerCapabilities, ServerConfig, ServerNotification,
};
use rmcp::service::{ElicitationError, ElicitationMode};
use rmcp::{Peer, RoleServer, ServerHandler, ServiceExt as _, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::auditor::{self, Memory};
use crate::client::{ClientConfig, Connection, Session};
use crate::verifier;

/// The newest protocol revision served: the one the issue names, the last with the
/// `initialize` handshake and server-to-client requests (elicitation) on stdio.
const PROTOCOL: ProtocolVersion = ProtocolVersion::V_2025_11_25;
/// The longest `wait_for_approval` may be asked to wait in one call.
const MAX_WAIT_SECONDS: u64 = 24 * 3600;
/// What it waits when not told.
const DEFAULT_WAIT_SECONDS: u64 = 600;
/// How long one round of a wait lasts: a progress notification goes out after each.
const ROUND_SECONDS: u64 = 10;
/// The largest payload `sign` takes (the appliance's own limit).
const MAX_PAYLOAD: usize = 1024 * 1024;
/// How long the client's user has to answer an elicitation before the tool goes on without.
const ELICITATION_TIMEOUT: Duration = Duration::from_secs(300);

/// What the server needs besides the client configuration.
#[derive(Debug, Default)]
pub struct Options {
    /// The decision keys `verify_approval` trusts, saved from `/.well-known/jwks.json`; without
    /// them they are read over the SSH connection (`jwks`), authenticated by the pinned host key.
    pub jwks: Option<Value>,
    /// Where checkpoints seen are kept, shared with `sshsign audit` (default: its own place).
    pub memory: Option<Memory>,
}

/// Runs the server on stdin and stdout until the client closes them.
pub async fn serve_stdio(config: ClientConfig, options: Options) -> anyhow::Result<()> {
    let server = Server::new(config, options);
    let running = server.serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}

/// The MCP server: one per client connection.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
    tool_router: ToolRouter<Server>,
}

struct Inner {
    config: ClientConfig,
    options: Options,
    /// The connection and session, made at the first tool call and made again if they end.
    link: tokio::sync::Mutex<Option<Link>>,
    /// Requests whose page this server showed by elicitation, and has not yet said are done.
    elicited: Mutex<HashSet<String>>,
}

struct Link {
    connection: Arc<Connection>,
    session: Arc<Session>,
    /// Who the SSH key is (`whoami`'s `user_id`).
    user_id: String,
}

/// A tool's failure, as the model reads it: the appliance's error code, and a message.
#[derive(Debug)]
struct Failure {
    code: String,
    message: String,
}

impl Failure {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Failure {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    fn result(self) -> CallToolResult {
        CallToolResult::structured_error(
            json!({"error": {"code": self.code, "message": self.message}}),
        )
    }
}

fn answer(outcome: Result<Value, Failure>) -> CallToolResult {
    match outcome {
        Ok(value) => CallToolResult::structured(value),
        Err(failure) => failure.result(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Server {
    pub fn new(config: ClientConfig, options: Options) -> Self {
        Server {
            inner: Arc::new(Inner {
                config,
                options,
                link: tokio::sync::Mutex::new(None),
                elicited: Mutex::new(HashSet::new()),
            }),
            tool_router: Self::tool_router(),
        }
    }

    /// The session to the appliance, opened (or opened again) as needed.
    async fn link(&self) -> Result<(Arc<Session>, String), Failure> {
        let unreachable = |e: crate::client::Error| Failure::new("unreachable", e.to_string());
        let mut link = self.inner.link.lock().await;
        if let Some(current) = link.as_ref()
            && !current.session.is_closed()
        {
            return Ok((Arc::clone(&current.session), current.user_id.clone()));
        }
        // A connection whose session ended is reused if it still stands (the connection moves
        // to a fresh one by itself when it has served its share of channels).
        let connection = match link.take() {
            Some(old) => old.connection,
            None => Arc::new(
                Connection::connect(&self.inner.config)
                    .await
                    .map_err(unreachable)?,
            ),
        };
        let session = match Session::open(&connection).await {
            Ok(session) => Arc::new(session),
            // The old connection may be gone: one fresh try.
            Err(_) => {
                let fresh = Connection::connect(&self.inner.config)
                    .await
                    .map_err(unreachable)?;
                let session = Session::open(&fresh).await.map_err(unreachable)?;
                return self
                    .keep(&mut link, Arc::new(fresh), Arc::new(session))
                    .await;
            }
        };
        self.keep(&mut link, connection, session).await
    }

    async fn keep(
        &self,
        link: &mut Option<Link>,
        connection: Arc<Connection>,
        session: Arc<Session>,
    ) -> Result<(Arc<Session>, String), Failure> {
        let whoami = command(&session, &["whoami".to_owned()], &[]).await?;
        let user_id = whoami["user_id"].as_str().unwrap_or_default().to_owned();
        *link = Some(Link {
            connection,
            session: Arc::clone(&session),
            user_id: user_id.clone(),
        });
        Ok((session, user_id))
    }

    /// Runs one appliance command; its reply, or its error as a failure.
    async fn run(&self, words: Vec<String>, stdin: &[u8]) -> Result<Value, Failure> {
        let (session, _) = self.link().await?;
        command(&session, &words, stdin).await
    }

    /// The caller's user id.
    async fn me(&self) -> Result<String, Failure> {
        Ok(self.link().await?.1)
    }

    /// Shows `url` to the client's user by URL-mode elicitation, if the client takes it; says
    /// what came of it: `accepted`, `declined`, `cancelled`, `unsupported` or `unanswered`.
    async fn show_page(
        &self,
        peer: &Peer<RoleServer>,
        id: &str,
        url: &str,
        message: String,
    ) -> &'static str {
        if !peer
            .supported_elicitation_modes()
            .contains(&ElicitationMode::Url)
        {
            return "unsupported";
        }
        let Ok(parsed) = url::Url::parse(url) else {
            return "unsupported";
        };
        let asked = peer
            .elicit_url_with_timeout(message, parsed, id, Some(ELICITATION_TIMEOUT))
            .await;
        use rmcp::model::ElicitationAction;
        match asked {
            Ok(ElicitationAction::Accept) => {
                // The user went to the page: they hear when it is done with.
                lock(&self.inner.elicited).insert(id.to_owned());
                "accepted"
            }
            Ok(ElicitationAction::Decline) => "declined",
            Ok(_) => "cancelled",
            Err(ElicitationError::CapabilityNotSupported) => "unsupported",
            Err(_) => "unanswered",
        }
    }

    /// Tells the client that the page it showed for request `id` is done with, once.
    async fn elicitation_complete(&self, peer: &Peer<RoleServer>, id: &str) {
        if !lock(&self.inner.elicited).remove(id) {
            return;
        }
        let notification = CustomNotification::new(
            "notifications/elicitation/complete",
            Some(json!({ "elicitationId": id })),
        );
        let _ = peer
            .send_notification(ServerNotification::CustomNotification(notification))
            .await;
    }

    /// The decision keys `verify_approval` trusts.
    async fn trusted_keys(&self) -> Result<verifier::TrustedKeys, Failure> {
        let jwks = match &self.inner.options.jwks {
            Some(jwks) => jwks.clone(),
            None => self.run(vec!["jwks".to_owned()], &[]).await?,
        };
        verifier::TrustedKeys::from_jwks(&jwks)
            .map_err(|e| Failure::new("invalid_jwks", e.to_string()))
    }
}

/// Runs a command on `session`: its reply, or its error reply as a failure.
async fn command(session: &Session, words: &[String], stdin: &[u8]) -> Result<Value, Failure> {
    let output = session
        .run(words, stdin)
        .await
        .map_err(|e| Failure::new("unreachable", e.to_string()))?;
    let reply = output
        .json()
        .map_err(|e| Failure::new("bad_reply", e.to_string()))?;
    if output.exit_status == 0 {
        return Ok(reply);
    }
    let code = reply["error"]["code"]
        .as_str()
        .unwrap_or("failed")
        .to_owned();
    let message = reply["error"]["message"]
        .as_str()
        .unwrap_or("the appliance refused")
        .to_owned();
    Err(Failure { code, message })
}

/// Whom a pending request waits for, as a progress message names them.
fn waiting_for(reply: &Value) -> String {
    let voted: Vec<&str> = reply["votes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["approver"].as_str())
        .collect();
    match reply["approvers"].as_array() {
        Some(approvers) => approvers
            .iter()
            .filter_map(Value::as_str)
            .filter(|a| !voted.contains(a))
            .collect::<Vec<_>>()
            .join(", "),
        None => reply["principal"].as_str().unwrap_or_default().to_owned(),
    }
}

/// `--flag=value`: a value that begins with `-` stays a value.
fn flag(name: &str, value: &str) -> String {
    format!("--{name}={value}")
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new("invalid_argument", message)
}

/// A request's id, as a tool argument names it.
fn request_id(id: &str) -> Result<&str, Failure> {
    let id = id.trim();
    let known = ["pnd_", "apr_"].iter().any(|p| id.starts_with(p));
    if !known || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(invalid(format!(
            "{id:?} is not a request id (pnd_... for a co-signature, apr_... for an approval)"
        )));
    }
    Ok(id)
}

// The tools' arguments. Their doc comments are the descriptions a model reads.

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignArgs {
    /// What to sign, as UTF-8 text (a commit object, a document, a message). Give this or
    /// payload_base64, at most 1 MiB.
    #[serde(default)]
    pub payload: Option<String>,
    /// What to sign, base64-encoded, for binary payloads. Give this or payload.
    #[serde(default)]
    pub payload_base64: Option<String>,
    /// The SSHSIG namespace, one of the key's authorized scopes: "git" for commits and tags
    /// (the default), or e.g. "safe-agreement", "nda", "file".
    #[serde(default)]
    pub namespace: Option<String>,
    /// The key to sign with (ak_...). Default: your first active key whose authorization
    /// covers the namespace (list_keys shows them).
    #[serde(default)]
    pub key_id: Option<String>,
    /// The terms of what is signed, checked against the authorization's typed constraints
    /// (e.g. {"valuation_cap": 8000000, "discount_rate": 0.2}).
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// The repository the signature is for (e.g. github.com/acme/app), checked against the
    /// authorization's rules.
    #[serde(default)]
    pub repository: Option<String>,
    /// The branch the signature is for, checked against the authorization's rules.
    #[serde(default)]
    pub branch: Option<String>,
    /// For a co-signed key: how long the request waits for its approver, e.g. "1h" (default
    /// 24h, at most 30d).
    #[serde(default)]
    pub ttl: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestApprovalArgs {
    /// What the approvers are asked to approve, shown on their page (1 to 500 characters),
    /// e.g. "Deploy v2.1.0 to production".
    #[schemars(length(min = 1, max = 500))]
    pub action: String,
    /// Details shown with the action and bound into the signed decision by their SHA-256: a
    /// JSON object of at most 4 KB, e.g. {"commit": "4b825dc", "env": "prod"}.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// Who decides: user ids (usr_...) or SSH key fingerprints (SHA256:...) of people who
    /// accept requests from you. Default: you.
    #[serde(default)]
    pub approvers: Option<Vec<String>>,
    /// How many approvals it takes (default 1); one rejection closes the request.
    #[serde(default)]
    #[schemars(range(min = 1, max = 20))]
    pub threshold: Option<u32>,
    /// How approvers may prove themselves (default passkey and totp).
    #[serde(default)]
    pub methods: Option<Vec<ProofMethod>>,
    /// How long the request stays open, e.g. "15m", "1h" (60s to 7d; default 24h).
    #[serde(default)]
    pub ttl: Option<String>,
}

/// How an approver proves themselves.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProofMethod {
    /// A passkey (WebAuthn) on the request's page.
    Passkey,
    /// A code from an authenticator app on the request's page.
    Totp,
    /// `approve` over SSH with their own key.
    Ssh,
}

impl ProofMethod {
    fn word(self) -> &'static str {
        self.method().as_str()
    }

    fn method(self) -> crate::approval::decision::Method {
        use crate::approval::decision::Method;
        match self {
            ProofMethod::Passkey => Method::Passkey,
            ProofMethod::Totp => Method::Totp,
            ProofMethod::Ssh => Method::Ssh,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckArgs {
    /// The request: apr_... (an approval) or pnd_... (a co-signature).
    pub id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitArgs {
    /// The request: apr_... (an approval) or pnd_... (a co-signature).
    pub id: String,
    /// How long to wait for the decision, in seconds (default 600, at most 86400). The result
    /// says timed_out when the request is still pending then.
    #[serde(default)]
    #[schemars(range(max = 86400))]
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyArgs {
    /// The signed decision: what check_approval or wait_for_approval returned, a webhook's
    /// body, or the decision object alone.
    pub decision: Value,
    /// The request it must belong to (apr_...). Give this, or action with metadata.
    #[serde(default)]
    pub request_id: Option<String>,
    /// The action text the approver was shown.
    #[serde(default)]
    pub action: Option<String>,
    /// The metadata the approver was shown (with action; {} when there was none).
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// The approver who must have decided (usr_...).
    #[serde(default)]
    pub approver: Option<String>,
    /// How the approver must have proved themselves.
    #[serde(default)]
    pub method: Option<ProofMethod>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListKeysArgs {
    /// Include revoked and expired keys (default: active keys only).
    #[serde(default)]
    pub include_inactive: bool,
    /// Where the page starts: a previous result's "next".
    #[serde(default)]
    pub from: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditProofArgs {
    /// The audit entry's index: the "audit.index" of a sign result, or of an entry.
    pub index: u64,
}

#[tool_router]
impl Server {
    #[tool(
        description = "Sign a payload with one of your keys inside the appliance's hardware token \
                       (an SSH signature, SSHSIG, that `ssh-keygen -Y verify` and git check). \
                       Autonomous keys sign at once: the result has status \"signed\" and the \
                       armored signature. Co-signed keys need a person: the result has status \
                       \"pending_cosign\", a pending_id and the approval page's address, which is \
                       shown to the user; call wait_for_approval with the pending_id to get the \
                       signature once approved."
    )]
    async fn sign(
        &self,
        Parameters(args): Parameters<SignArgs>,
        peer: Peer<RoleServer>,
    ) -> CallToolResult {
        answer(self.sign_payload(args, &peer).await)
    }

    #[tool(
        description = "Ask one or more people to approve an action (a deploy, a payment, a \
                       merge). Returns the request (apr_...) and each approver's page address, \
                       which is shown to the user; approvers decide there with a passkey or a \
                       TOTP code (or over SSH if methods includes \"ssh\"). Then call \
                       wait_for_approval: once decided, it returns the decision signed by the \
                       appliance's token, which verify_approval checks offline."
    )]
    async fn request_approval(
        &self,
        Parameters(args): Parameters<RequestApprovalArgs>,
        peer: Peer<RoleServer>,
    ) -> CallToolResult {
        answer(self.ask(args, &peer).await)
    }

    #[tool(
        description = "Read a request's status now, without waiting: pending, approved, \
                       rejected/denied or expired; once an approval is decided, its signed \
                       decision; once a co-signature is approved, the signature."
    )]
    async fn check_approval(
        &self,
        Parameters(args): Parameters<CheckArgs>,
        peer: Peer<RoleServer>,
    ) -> CallToolResult {
        let outcome = async {
            let id = request_id(&args.id)?;
            let reply = self
                .run(vec!["get-envelope".into(), flag("id", id)], &[])
                .await?;
            if reply["status"] != "pending" {
                self.elicitation_complete(&peer, id).await;
            }
            Ok(reply)
        };
        answer(outcome.await)
    }

    #[tool(
        description = "Wait until a request (apr_... or pnd_...) is decided or expires, then \
                       return it: for an approval, with the decision signed by the token; for a \
                       co-signature, with the signature. Reports progress while it waits and \
                       stops when cancelled. If timeout_seconds pass first, returns the request \
                       still pending with timed_out true; call again to wait longer."
    )]
    async fn wait_for_approval(
        &self,
        Parameters(args): Parameters<WaitArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
        cancelled: CancellationToken,
    ) -> CallToolResult {
        answer(self.wait(args, &meta, &peer, &cancelled).await)
    }

    #[tool(
        description = "Check a signed approval decision offline: the token's Ed25519 signature \
                       under the appliance's published decision keys, that it approves (not \
                       rejects), was made before the request expired, and is bound to the \
                       request id, or to the action and metadata, you name (and the approver \
                       and method, when given). Returns verified true with the checks, or an \
                       error saying which check failed."
    )]
    async fn verify_approval(&self, Parameters(args): Parameters<VerifyArgs>) -> CallToolResult {
        answer(self.verify(args).await)
    }

    #[tool(
        description = "List your signing keys and the keys granted to you: key_id, public key, \
                       and each authorization's scopes (namespaces), tier (autonomous or cosign), \
                       constraints and expiry."
    )]
    async fn list_keys(&self, Parameters(args): Parameters<ListKeysArgs>) -> CallToolResult {
        let mut words = vec!["keys".to_owned(), "--limit=100".to_owned()];
        if !args.include_inactive {
            words.push("--active".into());
        }
        if let Some(from) = args.from {
            words.push(flag("from", &from.to_string()));
        }
        answer(self.run(words, &[]).await)
    }

    #[tool(
        description = "Prove that one of your audit entries (e.g. a signature's \"audit.index\") \
                       is in the appliance's append-only audit log: fetches the signed checkpoint \
                       and the inclusion proof and checks both here, against the log key pinned \
                       at first use and the checkpoints seen before (a rolled-back log is \
                       refused). Returns the entry and verified true."
    )]
    async fn audit_proof(&self, Parameters(args): Parameters<AuditProofArgs>) -> CallToolResult {
        answer(self.prove(args.index).await)
    }
}

impl Server {
    async fn sign_payload(
        &self,
        args: SignArgs,
        peer: &Peer<RoleServer>,
    ) -> Result<Value, Failure> {
        let payload = match (args.payload, args.payload_base64) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| invalid(format!("payload_base64 is not base64: {e}")))?,
            _ => {
                return Err(invalid(
                    "give the payload as payload or payload_base64, not both",
                ));
            }
        };
        if payload.len() > MAX_PAYLOAD {
            return Err(invalid(format!(
                "the payload is at most {MAX_PAYLOAD} bytes"
            )));
        }
        let namespace = args.namespace.unwrap_or_else(|| "git".to_owned());
        let mut words = vec!["sign".to_owned(), flag("type", &namespace)];
        if let Some(key) = &args.key_id {
            words.push(flag("key-id", key));
        }
        if let Some(metadata) = &args.metadata {
            words.push(flag(
                "metadata",
                &Value::Object(metadata.clone()).to_string(),
            ));
        }
        for (name, value) in [
            ("repository", &args.repository),
            ("branch", &args.branch),
            ("ttl", &args.ttl),
        ] {
            if let Some(value) = value {
                words.push(flag(name, value));
            }
        }
        let mut reply = self.run(words, &payload).await?;
        if reply["status"] == "pending_cosign" {
            let id = reply["pending_id"].as_str().unwrap_or_default().to_owned();
            let url = reply["approval_url"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let message = format!(
                "An agent asks to sign in namespace \"{namespace}\" with key {}, which needs the \
                 approval of {}. Open the page to review it and decide.",
                reply["key_id"].as_str().unwrap_or_default(),
                reply["principal"].as_str().unwrap_or_default(),
            );
            reply["elicitation"] = self.show_page(peer, &id, &url, message).await.into();
        }
        Ok(reply)
    }

    async fn ask(
        &self,
        args: RequestApprovalArgs,
        peer: &Peer<RoleServer>,
    ) -> Result<Value, Failure> {
        let mut words = vec!["request-approval".to_owned(), flag("action", &args.action)];
        if let Some(metadata) = &args.metadata {
            words.push(flag(
                "metadata",
                &Value::Object(metadata.clone()).to_string(),
            ));
        }
        for approver in args.approvers.iter().flatten() {
            words.push(flag("approver", approver));
        }
        if let Some(threshold) = args.threshold {
            words.push(flag("threshold", &threshold.to_string()));
        }
        for method in args.methods.iter().flatten() {
            words.push(flag("method", method.word()));
        }
        if let Some(ttl) = &args.ttl {
            words.push(flag("ttl", ttl));
        }
        let mut reply = self.run(words, &[]).await?;
        // The page addressed to the user, if they decide; else the first approver's.
        let me = self.me().await?;
        let pages = reply["approval_urls"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let page = pages
            .iter()
            .find(|p| p["approver"] == me.as_str())
            .or(pages.first())
            .cloned()
            .unwrap_or(Value::Null);
        let id = reply["id"].as_str().unwrap_or_default().to_owned();
        let url = page["url"].as_str().unwrap_or_default().to_owned();
        let message = if page["approver"] == me.as_str() {
            format!(
                "Approval requested: \"{}\". You decide on this page.",
                args.action.trim()
            )
        } else {
            format!(
                "Approval requested: \"{}\". {} decides on this page (send it to them).",
                args.action.trim(),
                page["approver"].as_str().unwrap_or_default()
            )
        };
        reply["elicitation"] = self.show_page(peer, &id, &url, message).await.into();
        Ok(reply)
    }

    async fn wait(
        &self,
        args: WaitArgs,
        meta: &RequestMetaObject,
        peer: &Peer<RoleServer>,
        cancelled: &CancellationToken,
    ) -> Result<Value, Failure> {
        let id = request_id(&args.id)?;
        let timeout = args.timeout_seconds.unwrap_or(DEFAULT_WAIT_SECONDS);
        if timeout > MAX_WAIT_SECONDS {
            return Err(invalid(format!(
                "timeout_seconds is at most {MAX_WAIT_SECONDS}"
            )));
        }
        let progress = meta.get_progress_token();
        let started = Instant::now();
        let mut waiting_on = String::new();
        loop {
            let waited = started.elapsed().as_secs();
            if let Some(token) = &progress {
                let mut note = ProgressNotificationParam::new(token.clone(), waited as f64)
                    .with_total(timeout as f64);
                if !waiting_on.is_empty() {
                    note = note.with_message(format!("{id} is pending; waiting for {waiting_on}"));
                }
                let _ = peer.notify_progress(note).await;
            }
            let round = timeout.saturating_sub(waited).min(ROUND_SECONDS);
            let words = vec![
                "get-envelope".to_owned(),
                flag("id", id),
                flag("wait", &round.to_string()),
            ];
            let mut reply = tokio::select! {
                reply = self.run(words, &[]) => reply?,
                () = cancelled.cancelled() => {
                    return Err(Failure::new("cancelled", "the wait was cancelled"));
                }
            };
            let waited = started.elapsed().as_secs();
            if reply["status"] != "pending" {
                self.elicitation_complete(peer, id).await;
                reply["waited_seconds"] = waited.into();
                return Ok(reply);
            }
            if waited >= timeout {
                reply["waited_seconds"] = waited.into();
                reply["timed_out"] = true.into();
                return Ok(reply);
            }
            waiting_on = waiting_for(&reply);
        }
    }

    async fn verify(&self, args: VerifyArgs) -> Result<Value, Failure> {
        let action = match (args.action, args.metadata) {
            (Some(action), metadata) => Some((action, metadata.unwrap_or_default())),
            (None, Some(_)) => return Err(invalid("metadata goes with action")),
            (None, None) => None,
        };
        if args.request_id.is_none() && action.is_none() {
            return Err(invalid(
                "name the request_id, or the action and metadata, it must be bound to",
            ));
        }
        let method = args.method.map(ProofMethod::method);
        let expected = verifier::Expected {
            request_id: args.request_id,
            action,
            approver: args.approver,
            method,
        };
        let keys = self.trusted_keys().await?;
        let report = verifier::approval(&args.decision, &keys, &expected)
            .map_err(|refusal| Failure::new("not_verified", refusal.0))?;
        Ok(serde_json::to_value(report).unwrap_or_default())
    }

    async fn prove(&self, index: u64) -> Result<Value, Failure> {
        let memory = match &self.inner.options.memory {
            Some(memory) => memory.clone(),
            None => Memory::default_location().ok_or_else(|| {
                Failure::new("no_state", "set HOME or XDG_STATE_HOME to keep audit state")
            })?,
        };
        // A closure that returns a future, not an async closure: the future it makes owns what
        // it uses, so the tool's future stays `Send`.
        let fetch = |words: Vec<String>| {
            let server = self.clone();
            async move { server.run(words, &[]).await }
        };
        let report = auditor::check_online(&memory, None, &[], Some(index), fetch).await?;
        Ok(serde_json::to_value(report).unwrap_or_default())
    }
}

impl From<auditor::AuditorError> for Failure {
    fn from(error: auditor::AuditorError) -> Self {
        Failure::new("audit_check_failed", error.to_string())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("sshsign", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Signs and asks for human approval through an sshsign appliance. Every private \
                 key stays in the appliance's hardware token; you act with the user's SSH key. \
                 Use list_keys to see what you may sign with, sign to sign, request_approval \
                 before a risky action, and wait_for_approval for a person's decision; a page \
                 address is shown to the user, never a secret.",
            )
            .with_protocol_version(PROTOCOL)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&PROTOCOL))
    }
}
