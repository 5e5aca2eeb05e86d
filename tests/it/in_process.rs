//! The in-process tier: the appliance, its request state machine and its HTTP router driven
//! from the test's own process, on a real SoftHSM token (nextest runs each test in a process of
//! its own), without sockets or a server binary. The end-to-end tiers drive the same code
//! through stock `ssh`, git and Chromium.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sshsign::appliance::{Caller, SignInput, SignOutcome};
use sshsign::approval::decision::Verdict;
use sshsign::audit::log::{Head, Sink};
use sshsign::audit::storage::LogStore;
use sshsign::audit::tiles::TileStore;
use sshsign::request::RequestStatus;

use crate::common::in_process_token;

/// Writes through to the real tiles, failing while `failing` is set.
pub struct Switch {
    tiles: Arc<TileStore>,
    pub failing: AtomicBool,
}

impl Sink for Switch {
    fn append(&self, entries: &[Vec<u8>]) -> Result<(u64, Head), String> {
        if self.failing.load(Ordering::SeqCst) {
            return Err("disk full".to_owned());
        }
        Sink::append(&*self.tiles, entries)
    }
}

/// An appliance in this process, on a SoftHSM token of its own, whose audit log writes through
/// [`Switch`]; the temporary directory and token store live as long as it does.
pub struct InProcess {
    pub core: Arc<sshsign::appliance::Appliance>,
    pub sink: Arc<Switch>,
    /// The core's token, to look at it behind the core's back.
    pub token: sshsign::hsm::Token,
    _dir: tempfile::TempDir,
    _token: sshsign::softhsm::SoftHsmStore,
}

pub fn in_process() -> InProcess {
    use sshsign::appliance::{Appliance as Core, Settings};
    use sshsign::audit::{AuditLog, CheckpointSigner};
    use sshsign::hsm::Token;

    let (hsm, token_store) = in_process_token(2);
    sshsign::provision::generate_appliance_keys(&hsm).unwrap();
    let keys = sshsign::provision::appliance_keys(&hsm).unwrap();
    let seal_key = sshsign::provision::seal_key(&hsm).unwrap();
    let (sealer, _) = sshsign::seal::new_data_key(&hsm, &seal_key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = sshsign::store::Store::open(dir.path()).unwrap();
    store.unseal_with(sealer);
    let token = Token::new(Arc::new(hsm)).unwrap();
    let audit_dir = dir.path().join("audit");
    let tiles = Arc::new(TileStore::open(&audit_dir, 1 << 20).unwrap());
    let sink = Arc::new(Switch {
        tiles: Arc::clone(&tiles),
        failing: AtomicBool::new(false),
    });
    let checkpoint_key = keys
        .iter()
        .find(|k| k.role == sshsign::provision::KeyRole::Checkpoint)
        .unwrap()
        .clone();
    let audit = AuditLog::open_with_sink(
        store.sled(),
        sink.clone(),
        LogStore::files(&audit_dir, tiles).unwrap(),
        CheckpointSigner::new(token.clone(), std::slice::from_ref(&checkpoint_key)).unwrap(),
    )
    .unwrap();
    let settings = Settings {
        approval_base: "http://localhost".into(),
        pending_ttl: 60,
        webhook_policy: Default::default(),
        webhook_retry: std::time::Duration::from_secs(10),
        quotas: Default::default(),
        token_objects: None,
        carry: None,
    };
    let core = Core::new(token.clone(), store, keys, Arc::new(audit), settings).unwrap();
    InProcess {
        core,
        sink,
        token,
        _dir: dir,
        _token: token_store,
    }
}

pub async fn caller(core: &sshsign::appliance::Appliance, seed: u8) -> sshsign::appliance::Caller {
    let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]));
    core.identify(key.public_key(), std::net::IpAddr::from([127, 0, 0, 1]))
        .await
        .unwrap()
}

pub fn terms(tier: &str) -> sshsign::policy::Terms {
    serde_json::from_value(serde_json::json!({
        "scopes": ["git"], "tier": tier, "require_signature": false,
        "constraints": {}, "hard_rules": {}, "soft_rules": {}, "expires_at": null,
    }))
    .unwrap()
}

/// Decides request `id` as `caller` over SSH.
pub async fn ssh_decide(
    core: &sshsign::appliance::Appliance,
    caller: &sshsign::appliance::Caller,
    id: &str,
    verdict: sshsign::approval::decision::Verdict,
) -> Result<sshsign::appliance::Request, sshsign::appliance::Error> {
    use sshsign::appliance::{Proof, Ruling};
    let id = sshsign::request::RequestId::parse(id).expect("a request id");
    let ruling = Ruling {
        verdict,
        reason: None,
        drawn: None,
        consented: false,
    };
    core.decide(&id, ruling, Proof::Ssh(caller.clone())).await
}

/// Enrolls a TOTP secret for `caller` and confirms it with its current code; returns the
/// record and the secret's bytes.
pub async fn confirmed_totp(
    core: &sshsign::appliance::Appliance,
    caller: &Caller,
) -> (sshsign::views::AuthenticatorView, Vec<u8>) {
    let (_, uri) = core.enroll_totp(caller, "phone").await.unwrap();
    let secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let secret = crate::common::base32_decode(secret);
    let step = (sshsign::time::now() / 30) as u64;
    let code = format!("{:06}", sshsign::approval::totp::code(&secret, step));
    let confirmed = core.confirm_totp(caller, &code).await.unwrap();
    (confirmed, secret)
}

/// What [`cosign_request`] asks to sign.
const COSIGNED: &[u8] = b"tree 4b825dc6\n\nco-signed";

/// `alice`'s key, granted to `bob` in the cosign tier, and a request by `bob` to sign with it
/// that waits `ttl` seconds for alice (the appliance's default when `None`).
async fn cosign_request(
    core: &sshsign::appliance::Appliance,
    alice: &Caller,
    bob: &Caller,
    ttl: Option<i64>,
) -> sshsign::views::PendingCosignView {
    use sshsign::appliance::Grant;
    let key = core
        .create_key(
            alice,
            Grant {
                terms: terms("autonomous"),
                grantee: None,
            },
        )
        .await
        .unwrap()
        .0
        .key;
    core.allow_requester(bob, alice.id()).await.unwrap();
    let grant = Grant {
        terms: terms("cosign"),
        grantee: Some(bob.id().to_owned()),
    };
    core.authorize(alice, &key.key_id, grant).await.unwrap();
    let input = SignInput {
        key_id: key.key_id.clone(),
        namespace: "git".into(),
        payload: COSIGNED.to_vec(),
        metadata: Default::default(),
        context: Default::default(),
        ttl,
    };
    match core.sign(bob, input).await.unwrap() {
        SignOutcome::Pending(request) => request,
        SignOutcome::Signed(_) => panic!("a cosign grant makes a pending request"),
    }
}

/// An approval request through an API key of `owner`'s, decided by `owner` over SSH.
async fn approval_request(
    core: &sshsign::appliance::Appliance,
    owner: &Caller,
) -> sshsign::views::ApprovalView {
    use sshsign::appliance::{ApiScope, ApprovalInput};
    use sshsign::approval::decision::Method;
    let (_, secret) = core
        .create_api_key(owner, "ci", vec![ApiScope::ApprovalCreate])
        .await
        .unwrap();
    let key = core
        .authenticate_api_key(&secret, ApiScope::ApprovalCreate)
        .unwrap();
    let input = ApprovalInput {
        action: "Deploy v2 to production".into(),
        methods: Some(vec![Method::Ssh, Method::Passkey, Method::Totp]),
        ..Default::default()
    };
    core.request_approval(sshsign::appliance::Requester::ApiKey(&key), input)
        .await
        .unwrap()
        .request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_kinds_resolve_exactly_once_through_one_decide() {
    use sshsign::appliance::Error;
    let InProcess { core, .. } = in_process();
    let (alice, bob) = (caller(&core, 1).await, caller(&core, 2).await);

    // A signature request: only its principal decides it; a rejection is the seed's "denied".
    let signature = cosign_request(&core, &alice, &bob, None).await;
    let id = signature.pending_id.as_str();
    let by_requester = ssh_decide(&core, &bob, id, Verdict::Approved).await;
    assert!(
        matches!(by_requester, Err(Error::NotPrincipal(_))),
        "{by_requester:?}"
    );
    // A reason past its bound is refused, naming the field, before anything changes.
    let long = sshsign::appliance::Ruling {
        verdict: Verdict::Rejected,
        reason: Some("x".repeat(sshsign::appliance::MAX_REASON + 1)),
        drawn: None,
        consented: false,
    };
    let parsed = sshsign::request::RequestId::parse(id).unwrap();
    let refused = core
        .decide(&parsed, long, sshsign::appliance::Proof::Ssh(alice.clone()))
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::Invalid {
                field: "reason",
                ..
            })
        ),
        "{refused:?}"
    );
    let denied = ssh_decide(&core, &alice, id, Verdict::Rejected)
        .await
        .unwrap();
    assert_eq!(
        (denied.status(), denied.status_word()),
        (RequestStatus::Rejected, "denied")
    );
    assert!(!denied.awaits(alice.id()));
    let again = ssh_decide(&core, &alice, id, Verdict::Approved).await;
    assert!(
        matches!(
            again,
            Err(Error::AlreadyResolved {
                status: "denied",
                ..
            })
        ),
        "{again:?}"
    );

    // An approval request: its approver decides; the token signs the decision.
    let approval = approval_request(&core, &alice).await;
    let id = approval.id.as_str();
    let stranger = ssh_decide(&core, &bob, id, Verdict::Approved).await;
    assert!(
        matches!(stranger, Err(Error::UnknownRequest(_))),
        "{stranger:?}"
    );
    let approved = ssh_decide(&core, &alice, id, Verdict::Approved)
        .await
        .unwrap();
    assert_eq!(approved.status_word(), "approved");
    let sshsign::views::RequestView::Approval(record) = approved.view(String::new()) else {
        panic!("an apr_ id decides an approval: {approved:?}");
    };
    assert!(record.request.decision.is_some(), "the decision is signed");
    let again = ssh_decide(&core, &alice, id, Verdict::Rejected).await;
    assert!(
        matches!(
            again,
            Err(Error::AlreadyResolved {
                status: "approved",
                ..
            })
        ),
        "{again:?}"
    );
    let rejected = approval_request(&core, &alice).await;
    let rejected = ssh_decide(&core, &alice, &rejected.id, Verdict::Rejected)
        .await
        .unwrap();
    assert_eq!(rejected.status_word(), "rejected");

    // Both kinds are listed to the one who decided them, in the order they were made.
    let (listed, next) = core
        .requests_of(alice.id(), sshsign::appliance::Page::first())
        .await
        .unwrap();
    assert_eq!(next, None);
    let listed: Vec<String> = listed.iter().map(|r| r.id().to_owned()).collect();
    assert_eq!(
        listed,
        [
            signature.pending_id.clone(),
            approval.id.clone(),
            rejected.id().to_owned()
        ]
    );
    // An id of neither kind names nothing.
    let other = core.request_for(&alice, "ak_notarequest").await;
    assert!(matches!(other, Err(Error::UnknownRequest(_))), "{other:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_expires_a_signature_request_nobody_looks_at() {
    use sshsign::appliance::Error;
    let InProcess { core, .. } = in_process();
    let (alice, bob) = (caller(&core, 1).await, caller(&core, 2).await);
    let request = cosign_request(&core, &alice, &bob, Some(1)).await;
    let stop = Arc::new(tokio::sync::Notify::new());
    let sweeper = tokio::spawn({
        let (core, stop) = (Arc::clone(&core), Arc::clone(&stop));
        async move {
            core.run_deliveries(async move { stop.notified().await })
                .await
        }
    });
    // Only the sweep reads the request meanwhile.
    let mut expired = false;
    for _ in 0..100 {
        let stored = core.store().pending(&request.pending_id).unwrap().unwrap();
        if stored.status == RequestStatus::Expired {
            expired = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    stop.notify_one();
    sweeper.await.unwrap();
    assert!(expired, "the sweep marked the request expired");
    let size = core.audit().head().size;
    let entries = core.audit().entries(0, size as usize).unwrap();
    let expiry = entries
        .iter()
        .find(|(_, e)| e.action == sshsign::audit::Action::CosignExpired)
        .expect("the expiry has its audit entry");
    assert_eq!(
        expiry.1.pending_id.as_deref(),
        Some(request.pending_id.as_str())
    );
    let late = ssh_decide(&core, &alice, &request.pending_id, Verdict::Approved).await;
    assert!(matches!(late, Err(Error::RequestExpired(_))), "{late:?}");
}

/// The HTTP side of `core`, as the server mounts it, without a socket.
pub fn router(core: &Arc<sshsign::appliance::Appliance>) -> axum::Router {
    use sshsign::limit::Limit;
    use sshsign::web::guard::Guard;
    let limit = Limit::per(6000, std::time::Duration::from_secs(60));
    sshsign::web::router(sshsign::web::WebState {
        appliance: Arc::clone(core),
        host_key: "ssh-ed25519 AAAA test".into(),
        host_key_fingerprint: "SHA256:test".into(),
        guard: Arc::new(Guard::new(Vec::new(), limit, limit, false)),
        sessions: Arc::new(sshsign::web::session::Sessions::new(core.store().clone())),
    })
}

/// Sends `request` through `router`; returns the status and the body as text.
async fn send(
    router: &axum::Router,
    request: axum::http::Request<axum::body::Body>,
) -> (axum::http::StatusCode, String) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_page_route_serves_and_decides_both_kinds() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use sha2::Digest as _;
    let InProcess { core, .. } = in_process();
    let (alice, bob) = (caller(&core, 1).await, caller(&core, 2).await);
    let signature = cosign_request(&core, &alice, &bob, None).await;
    let approval = approval_request(&core, &alice).await;
    let web = router(&core);
    let get = |path: String| Request::get(path).body(Body::empty()).unwrap();

    let (status, page) = send(&web, get(format!("/approve/{}", signature.pending_id))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<h1>Co-sign request</h1>"), "{page}");
    assert!(
        page.contains(&sshsign::hex::encode(&sha2::Sha512::digest(COSIGNED))),
        "the page shows the digest"
    );
    let (status, page) = send(&web, get(format!("/approve/{}", approval.id))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Deploy v2 to production"), "{page}");
    for unknown in ["apr_aaaaaaaaaaaaaaaaaaaaaaaaaa", "ak_x", "%00"] {
        let (status, _) = send(&web, get(format!("/approve/{unknown}"))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
    }

    // A drawn signature on an approval is refused before a code is tried or counted.
    let decide = |id: &str, body: serde_json::Value| {
        Request::post(format!("/approve/{id}/decide"))
            .header("content-type", "application/json")
            .header("origin", core.approval_base())
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let body = serde_json::json!({
        "decision": "approved", "method": "totp", "approver": alice.id(),
        "code": "000000", "signature_png": "iVBORw0KGgo=",
    });
    let (status, reply) = send(&web, decide(&approval.id, body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply.contains("takes no drawn signature"), "{reply}");
    let stored = core.store().approval(&approval.id).unwrap().unwrap();
    assert_eq!(
        (stored.totp_failures, stored.status),
        (0, RequestStatus::Pending)
    );

    // A wrong code on either kind counts against that request, through the same route.
    let (_, secret) = confirmed_totp(&core, &alice).await;
    let step = (sshsign::time::now() / 30) as u64;
    let code = |step: u64| format!("{:06}", sshsign::approval::totp::code(&secret, step));
    let valid: Vec<String> = (step - 2..=step + 2).map(code).collect();
    let wrong = (0..)
        .map(|n| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .unwrap();
    for id in [&signature.pending_id, &approval.id] {
        let body = serde_json::json!({
            "decision": "approved", "method": "totp", "approver": alice.id(), "code": wrong,
        });
        let (status, reply) = send(&web, decide(id, body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{id}: {reply}");
    }
    let stored = core
        .store()
        .pending(&signature.pending_id)
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.totp_failures, stored.status),
        (1, RequestStatus::Pending)
    );
    let stored = core.store().approval(&approval.id).unwrap().unwrap();
    assert_eq!(
        (stored.totp_failures, stored.status),
        (1, RequestStatus::Pending)
    );
}

/// The signing keys in the token (the appliance's own two left out), by label.
fn signing_keys_in(token: &sshsign::hsm::Token) -> Vec<String> {
    let mut labels: Vec<String> = token
        .blocking()
        .list()
        .unwrap()
        .into_iter()
        .map(|k| k.label)
        .filter(|l| l.starts_with("ak_"))
        .collect();
    labels.sort();
    labels
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_or_interrupted_key_changes_leave_no_token_object_behind() {
    use sshsign::appliance::{Error, Grant};
    let InProcess {
        core, sink, token, ..
    } = in_process();
    let alice = caller(&core, 1).await;
    let grant = || Grant {
        terms: terms("autonomous"),
        grantee: None,
    };
    let store = core.store();

    // A creation whose audit entry cannot be written leaves neither a record nor an object.
    sink.failing.store(true, Ordering::SeqCst);
    let failed = core.create_key(&alice, grant()).await;
    assert!(
        matches!(failed, Err(Error::AuditUnavailable(_))),
        "{failed:?}"
    );
    sink.failing.store(false, Ordering::SeqCst);
    assert!(signing_keys_in(&token).is_empty());
    assert!(store.signing_keys_of(alice.id()).unwrap().is_empty());
    assert!(store.token_chores().unwrap().is_empty());
    assert_eq!(core.key_usage().0, 0);

    // A crash between the token and the store (the note made, the key generated, no record):
    // start-up finds the object by its label and destroys it.
    let orphan = "ak_orphanorphanorphanorphan";
    store.put_token_chore(orphan).unwrap();
    token.blocking().generate_ed25519(orphan).unwrap();
    // A crash between a revocation and the token (revoked and noted, the object still there).
    let (revoked, _) = core.create_key(&alice, grant()).await.unwrap();
    let revoked = revoked.key.key_id;
    store.put_token_chore(&revoked).unwrap();
    store
        .revoke_signing_key(&revoked, sshsign::time::now(), || {
            sshsign::store::Error::Corrupt {
                kind: "signing key",
                key: revoked.clone(),
                reason: "revoked twice".into(),
            }
        })
        .unwrap();
    // A live key with a note left over (a crash after its record was made durable) keeps its
    // object.
    let (live, _) = core.create_key(&alice, grant()).await.unwrap();
    let live = live.key.key_id;
    store.put_token_chore(&live).unwrap();
    let mut expected = vec![orphan.to_owned(), revoked.clone(), live.clone()];
    expected.sort();
    assert_eq!(signing_keys_in(&token), expected);

    assert_eq!(core.finish_token_chores().await.unwrap(), 3);
    assert_eq!(signing_keys_in(&token), vec![live.clone()]);
    assert!(store.token_chores().unwrap().is_empty());
    let revoked_record = store.signing_key(&revoked).unwrap().unwrap();
    assert!(revoked_record.revoked_at.is_some());

    // A revocation through the appliance destroys the object at once and leaves no note.
    core.revoke(&alice, &live).await.unwrap();
    assert!(signing_keys_in(&token).is_empty());
    assert!(store.token_chores().unwrap().is_empty());
}
