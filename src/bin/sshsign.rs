//! `sshsign`: git's `gpg.ssh.program` for signing through the appliance, and a CLI for its
//! commands. See `sshsign::shim` for the forms it accepts.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgGroup, Parser, Subcommand};
use serde_json::{Value, json};
use sshsign::auditor::{self, Memory, Seen};
use sshsign::client::{ClientConfig, Connection};
use sshsign::shim::{self, Error};

/// The command line: `-Y ...` keeps ssh-keygen's grammar (git runs it); everything else is
/// parsed here, and an unknown flag or a stray argument exits 2 with the usage.
#[derive(Debug, Parser)]
#[command(
    name = "sshsign",
    version,
    about = "Sign through an sshsign appliance (git's gpg.ssh.program) and check what it signs, \
             offline.",
    after_help = "Also: sshsign -Y sign -n NAMESPACE -f KEY [FILE...] signs as ssh-keygen does \
                  (git's gpg.ssh.program); -Y verify|find-principals|check-novalidate|\
                  match-principals run ssh-keygen.\n\
                  The appliance is SSHSIGN_HOST / SSHSIGN_PORT (or ~/.config/sshsign/config.toml)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print an allowed_signers line for one of your keys.
    AllowedSigners(AllowedSignersArgs),
    /// Check the appliance's audit log: its checkpoint, your entries, saved replies.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check a signed approval decision offline; exit 0 only for an approval of what you name.
    VerifyApproval(VerifyApprovalArgs),
    /// Check a get-envelope reply offline: the seal, the drawn image and the SSHSIG.
    VerifyEnvelope(VerifyEnvelopeArgs),
    /// Run an appliance command (`sshsign help` lists them); the appliance parses its flags.
    #[command(external_subcommand)]
    Appliance(Vec<String>),
}

#[derive(Debug, clap::Args)]
struct AllowedSignersArgs {
    /// The key (ak_...).
    #[arg(long)]
    key_id: String,
    /// Who signs with it, as git names the committer (an email address).
    #[arg(long)]
    principal: String,
    /// The line holds only for signatures made at or after this time (ssh-keygen's
    /// YYYYMMDD[HHMM[SS]][Z]).
    #[arg(long, value_parser = signer_time)]
    valid_after: Option<String>,
    /// The line holds only for signatures made before this time (same form).
    #[arg(long, value_parser = signer_time)]
    valid_before: Option<String>,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Fetch and check the checkpoint, and that it extends the last one seen.
    Check,
    /// Fetch and check one of your entries against the checkpoint.
    Prove {
        /// The entry's index.
        #[arg(long)]
        index: u64,
    },
    /// Check a saved audit-checkpoint, audit-proof or audit-consistency reply.
    Verify {
        /// The log's verifier key (origin+keyhash+key).
        #[arg(long)]
        key: String,
        /// The checkpoint a consistency proof starts from.
        #[arg(long)]
        old: Option<PathBuf>,
        /// The saved reply.
        file: PathBuf,
    },
}

/// The keys a verifier trusts: the appliance's JWKS, saved, or one public key.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct TrustedKeys {
    /// The appliance's /.well-known/jwks.json, saved.
    #[arg(long)]
    jwks: Option<PathBuf>,
    /// The decision key: an ssh-ed25519 line or base64 of its 32 bytes.
    #[arg(long)]
    public_key: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("binding").required(true).multiple(true).args(["request_id", "action"])))]
struct VerifyApprovalArgs {
    #[command(flatten)]
    keys: TrustedKeys,
    /// The request the decision must belong to (apr_...).
    #[arg(long)]
    request_id: Option<String>,
    /// The action text the approver was shown (with --metadata).
    #[arg(long, requires = "metadata")]
    action: Option<String>,
    /// A file holding the metadata the approver was shown, as JSON (with --action).
    #[arg(long, requires = "action")]
    metadata: Option<PathBuf>,
    /// The approver who must have decided (usr_...).
    #[arg(long)]
    approver: Option<String>,
    /// How the approver must have proved themselves.
    #[arg(long, value_parser = ["passkey", "totp", "ssh"])]
    method: Option<String>,
    /// A status reply, a /verify reply, a webhook's data, or the decision object alone.
    file: PathBuf,
}

#[derive(Debug, clap::Args)]
struct VerifyEnvelopeArgs {
    #[command(flatten)]
    keys: TrustedKeys,
    /// The key that must have signed the document (an ssh-ed25519 line).
    #[arg(long)]
    signer_key: Option<String>,
    /// Where to write the drawn signature (PNG).
    #[arg(long)]
    write_image: Option<PathBuf>,
    /// A saved get-envelope reply.
    file: PathBuf,
}

/// ssh-keygen's time form for allowed_signers: YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, with
/// an optional trailing Z for UTC.
fn signer_time(text: &str) -> Result<String, String> {
    let digits = text.strip_suffix('Z').unwrap_or(text);
    if matches!(digits.len(), 8 | 12 | 14) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err("expected YYYYMMDD[HHMM[SS]][Z], as ssh-keygen takes it".to_owned())
    }
}

/// Exit status for a check that refused what it was given (usage errors exit 2).
const REFUSED: i32 = 1;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // git's form: ssh-keygen's grammar, where an unknown option is an error too.
    let keygen = args.first().is_some_and(|a| {
        a.starts_with("-Y") || (a.starts_with('-') && args.iter().any(|a| a.starts_with("-Y")))
    });
    let cli = if keygen { None } else { Some(Cli::parse()) };
    let outcome = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(async {
            match cli {
                Some(cli) => run(cli.command).await,
                None => keygen_form(&args).await,
            }
        }),
        Err(e) => Err(Error::Usage(format!("cannot start: {e}"))),
    };
    match outcome {
        Ok(status) => ExitCode::from(u8::try_from(status).unwrap_or(u8::MAX)),
        Err(error) => {
            eprintln!("sshsign: {error}");
            ExitCode::from(u8::try_from(shim::SIGN_FAILED).unwrap_or(u8::MAX))
        }
    }
}

async fn keygen_form(args: &[String]) -> Result<i32, Error> {
    let parsed = shim::parse_keygen_args(args)?;
    match parsed.operation.as_deref() {
        Some("sign") => shim::sign(parsed).await,
        Some("verify" | "find-principals" | "check-novalidate" | "match-principals") => {
            shim::delegate_to_ssh_keygen(args)
        }
        other => Err(Error::Usage(format!(
            "unknown -Y operation {:?}: sign, verify, find-principals, check-novalidate or \
             match-principals",
            other.unwrap_or_default()
        ))),
    }
}

async fn run(command: Command) -> Result<i32, Error> {
    match command {
        Command::AllowedSigners(args) => allowed_signers(args).await,
        Command::Audit(command) => audit(command).await,
        Command::VerifyApproval(args) => Ok(report(verify_approval(args))),
        Command::VerifyEnvelope(args) => Ok(report(verify_envelope(args))),
        Command::Appliance(words) => passthrough(&words).await,
    }
}

/// Prints a check's findings (exit 0) or why it refused (exit 1).
fn report(outcome: Result<Value, Refusal>) -> i32 {
    match outcome {
        Ok(found) => {
            print(&found);
            0
        }
        Err(Refusal(why)) => {
            eprintln!("sshsign: {why}");
            REFUSED
        }
    }
}

/// Why an offline check refused what it was given.
#[derive(Debug)]
struct Refusal(String);

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        Refusal(error.to_string())
    }
}

/// Runs an appliance command and prints its reply; exits with the appliance's status.
async fn passthrough(words: &[String]) -> Result<i32, Error> {
    let mut stdin = Vec::new();
    if matches!(words[0].as_str(), "sign" | "verify") {
        std::io::stdin()
            .read_to_end(&mut stdin)
            .map_err(|source| Error::Io {
                path: "stdin".to_owned(),
                source,
            })?;
    }
    let connection = Connection::connect(&ClientConfig::load()?).await?;
    let output = connection.run(words, &stdin).await?;
    connection.close().await;
    let mut out = std::io::stdout();
    let _ = out.write_all(&output.stdout).and_then(|()| out.flush());
    Ok(i32::try_from(output.exit_status).unwrap_or(1))
}

async fn allowed_signers(args: AllowedSignersArgs) -> Result<i32, Error> {
    let connection = Connection::connect(&ClientConfig::load()?).await?;
    let reply = shim::accepted(connection.run(&["keys".to_owned()], &[]).await?)?;
    connection.close().await;
    let key = reply["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["key_id"] == args.key_id.as_str())
        .ok_or_else(|| Error::Usage(format!("you hold no key {}", args.key_id)))?;
    // The namespaces the caller's active authorizations on the key cover.
    let mut namespaces: Vec<String> = key["authorizations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["status"] == "active")
        .flat_map(|a| a["scopes"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    namespaces.sort();
    namespaces.dedup();
    let mut options = vec![format!("namespaces=\"{}\"", namespaces.join(","))];
    if let Some(after) = &args.valid_after {
        options.push(format!("valid-after=\"{after}\""));
    }
    if let Some(before) = &args.valid_before {
        options.push(format!("valid-before=\"{before}\""));
    }
    let line = shim::allowed_signers_line(
        &args.principal,
        key["public_key"].as_str().unwrap_or_default(),
        &options,
    );
    println!("{line}");
    Ok(0)
}

fn print(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn audit_failed(e: auditor::AuditorError) -> Error {
    Error::Usage(format!("audit: {e}"))
}

/// `sshsign audit check | prove --index N | verify --key VKEY [--old FILE] FILE`.
async fn audit(command: AuditCommand) -> Result<i32, Error> {
    match command {
        AuditCommand::Verify { key, old, file } => audit_verify(&key, old.as_deref(), &file),
        AuditCommand::Check => audit_online(None).await,
        AuditCommand::Prove { index } => audit_online(Some(index)).await,
    }
}

/// Fetches the checkpoint (and, with `index`, that entry's proof) and checks it.
async fn audit_online(index: Option<u64>) -> Result<i32, Error> {
    let connection = Connection::connect(&ClientConfig::load()?).await?;
    let outcome = audit_online_over(&connection, index).await;
    connection.close().await;
    outcome
}

async fn audit_online_over(connection: &Connection, index: Option<u64>) -> Result<i32, Error> {
    let memory = Memory::default_location()
        .ok_or_else(|| Error::Usage("set HOME or XDG_STATE_HOME to keep audit state".into()))?;
    let run =
        |words: Vec<String>| async move { shim::accepted(connection.run(&words, &[]).await?) };
    let reply = match index {
        Some(index) => {
            run(vec![
                "audit-proof".into(),
                "--index".into(),
                index.to_string(),
            ])
            .await?
        }
        None => run(vec!["audit-checkpoint".into()]).await?,
    };
    let note = reply["checkpoint"].as_str().unwrap_or_default().to_owned();
    let offered = reply["verifier_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let origin = auditor::check_checkpoint(&note, &offered)
        .map_err(audit_failed)?
        .origin;
    let vkey = match std::env::var("SSHSIGN_AUDIT_KEY") {
        Ok(key) if !key.is_empty() => key,
        _ => memory.pinned_key(&origin, &offered).map_err(audit_failed)?,
    };
    let seen = memory.seen(&origin).map_err(audit_failed)?;
    let old_size = match &seen {
        Some(seen) => {
            auditor::check_checkpoint(&seen.checkpoint, &vkey)
                .map_err(audit_failed)?
                .size
        }
        None => 0,
    };
    let new_size = auditor::check_checkpoint(&note, &vkey)
        .map_err(audit_failed)?
        .size;
    let consistency = if old_size > 0 && new_size > old_size {
        let to = new_size.to_string();
        Some(
            run(vec![
                "audit-consistency".into(),
                "--from".into(),
                old_size.to_string(),
                "--to".into(),
                to,
            ])
            .await?,
        )
    } else {
        None
    };
    let checkpoint = auditor::advance(seen.as_ref(), &note, &vkey, |_| {
        consistency.ok_or(auditor::AuditorError::Shape("consistency proof"))
    })
    .map_err(audit_failed)?;
    memory
        .remember(
            &origin,
            &Seen {
                verifier_key: vkey.clone(),
                checkpoint: note.clone(),
            },
        )
        .map_err(audit_failed)?;
    let mut out = json!({
        "verified": true,
        "origin": checkpoint.origin,
        "size": checkpoint.size,
        "previously_seen": old_size,
    });
    if index.is_some() {
        let (_, entry) = auditor::check_inclusion(&reply, &vkey).map_err(audit_failed)?;
        out["index"] = reply["index"].clone();
        out["entry"] = serde_json::to_value(entry).unwrap_or_default();
    }
    print(&out);
    Ok(0)
}

/// Offline: checks a saved `audit-checkpoint`, `audit-proof` or `audit-consistency` reply.
fn audit_verify(vkey: &str, old: Option<&Path>, file: &Path) -> Result<i32, Error> {
    let reply = read_json(file)?;
    let out = if reply.get("entry").is_some() {
        let (checkpoint, entry) = auditor::check_inclusion(&reply, vkey).map_err(audit_failed)?;
        json!({ "verified": "inclusion", "size": checkpoint.size, "index": reply["index"], "entry": entry })
    } else if reply.get("from").is_some() {
        let old_file = old.ok_or_else(|| {
            Error::Usage("a consistency proof is checked from --old CHECKPOINT_FILE".into())
        })?;
        let old_reply = read_json(old_file)?;
        let old =
            auditor::check_checkpoint(old_reply["checkpoint"].as_str().unwrap_or_default(), vkey)
                .map_err(audit_failed)?;
        let new = auditor::check_consistency(&reply, &old, vkey).map_err(audit_failed)?;
        json!({ "verified": "consistency", "from": old.size, "to": new.size })
    } else {
        let checkpoint =
            auditor::check_checkpoint(reply["checkpoint"].as_str().unwrap_or_default(), vkey)
                .map_err(audit_failed)?;
        json!({ "verified": "checkpoint", "origin": checkpoint.origin, "size": checkpoint.size })
    };
    print(&out);
    Ok(0)
}

/// Reads a JSON file.
fn read_json(path: &Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("{}: not JSON: {e}", path.display())))
}

/// The appliance keys a verifier trusts: `--jwks FILE` (the appliance's
/// `/.well-known/jwks.json`, saved), or `--public-key KEY` (an ssh-ed25519 line or base64 of
/// 32 bytes), which stands for `kid`.
fn trusted_keys(keys: &TrustedKeys, kid: &str) -> Result<Vec<(String, [u8; 32])>, Refusal> {
    use sshsign::approval::decision;
    if let Some(path) = &keys.jwks {
        return decision::jwks_keys(&read_json(path)?)
            .map_err(|e| Refusal(format!("{}: {e}", path.display())));
    }
    let key = keys.public_key.as_deref().unwrap_or_default();
    let bytes = sshsign::pubkey::parse_ed25519(key)
        .or_else(|| {
            use base64::Engine as _;
            let engine = base64::engine::general_purpose::STANDARD;
            engine.decode(key).ok().and_then(|b| b.try_into().ok())
        })
        .ok_or_else(|| {
            Refusal("--public-key is an ssh-ed25519 line or base64 of 32 bytes".into())
        })?;
    Ok(vec![(kid.to_owned(), bytes)])
}

/// The signed decision in a saved document: a `/verify` reply (the document itself), a status
/// reply (its `decision`), or a webhook body (`data.decision`).
fn signed_decision(document: &Value) -> Option<sshsign::approval::decision::SignedDecision> {
    [
        document,
        &document["decision"],
        &document["data"]["decision"],
    ]
    .into_iter()
    .find(|d| d.get("signed_payload").is_some())
    .and_then(|d| serde_json::from_value(d.clone()).ok())
}

/// Offline: checks a signed decision against a JWKS file or a public key. It passes only for
/// an approval, unexpired when it was made, bound to what the caller names (the request, or the
/// action and metadata; the approver and method when given), and says what it checked.
fn verify_approval(args: VerifyApprovalArgs) -> Result<Value, Refusal> {
    use sshsign::approval::decision::{self, Verdict, full_hash, metadata_sha256, short_hash};
    let refuse = |why: String| Refusal(format!("decision refused: {why}"));
    let document = read_json(&args.file)?;
    let Some(signed) = signed_decision(&document) else {
        // A status reply for a request that never got a decision says why.
        return Err(match document["status"].as_str() {
            Some(status @ ("pending" | "expired")) => {
                refuse(format!("the request is {status}; it has no decision"))
            }
            _ => Refusal(format!("{}: holds no signed decision", args.file.display())),
        });
    };
    let keys = trusted_keys(&args.keys, &signed.key_id)?;
    let checked = decision::verify(&signed, &keys).map_err(|e| refuse(e.to_string()))?;
    let payload = &checked.payload;
    let mut checks = vec![
        "the payload is canonical JSON (RFC 8785)".to_owned(),
        format!(
            "the Ed25519 signature verifies under key {}",
            checked.key_id
        ),
    ];
    if payload.decision != Verdict::Approved {
        return Err(refuse(format!(
            "the decision is {}, not an approval",
            serde_json::to_value(payload.decision)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        )));
    }
    checks.push("it is an approval".into());
    if payload.ts > payload.exp {
        return Err(refuse("it was made after the request expired".into()));
    }
    checks.push("it was made before the request expired".into());
    if let Some(id) = &args.request_id {
        if &payload.rid != id {
            return Err(refuse(format!(
                "it is for request {}, not {id}",
                payload.rid
            )));
        }
        checks.push(format!("it is for request {id}"));
    }
    if let (Some(action), Some(metadata_file)) = (&args.action, &args.metadata) {
        let (Some(action_sha256), Some(bound_metadata)) =
            (&payload.action_sha256, &payload.metadata_sha256)
        else {
            return Err(refuse(
                "it is a version 1 decision, which binds only 64 bits of the action; check it \
                 with --request-id"
                    .into(),
            ));
        };
        if *action_sha256 != full_hash(action) {
            return Err(refuse("it is for another action".into()));
        }
        checks.push("the action matches (SHA-256)".into());
        let metadata = read_json(metadata_file)?;
        let metadata = metadata.as_object().ok_or_else(|| {
            Refusal(format!(
                "{}: the metadata is a JSON object",
                metadata_file.display()
            ))
        })?;
        if *bound_metadata != metadata_sha256(metadata) {
            return Err(refuse("it is for other metadata".into()));
        }
        checks.push("the metadata matches (SHA-256 of canonical JSON)".into());
    }
    if let Some(method) = &args.method {
        if payload.method.as_str() != method {
            return Err(refuse(format!(
                "it was made by {}, not {method}",
                payload.method.as_str()
            )));
        }
        checks.push(format!("the approver proved themselves by {method}"));
    }
    if let Some(approver) = &args.approver {
        let same = match &payload.approver_sha256 {
            Some(full) => *full == full_hash(approver),
            None => payload.approver == short_hash(approver),
        };
        if !same {
            return Err(refuse("another approver made it".into()));
        }
        checks.push(format!("{approver} made it"));
    }
    Ok(json!({
        "verified": true,
        "checked": checks,
        "payload": payload,
    }))
}

/// Offline: checks a `get-envelope` reply for a request approved with a drawn signature: the
/// envelope's exact bytes against its SHA-256, the image against its hash, the token's seal
/// against the appliance's key, and the document's SSHSIG against the envelope's payload hash.
fn verify_envelope(args: VerifyEnvelopeArgs) -> Result<Value, Refusal> {
    use base64::Engine as _;
    use sshsign::approval::envelope;
    let refused = |why: String| Refusal(format!("envelope refused: {why}"));
    let file = args.file.display().to_string();
    let reply = read_json(&args.file)?;
    let evidence = &reply["evidence"];
    let text = |value: &Value, what: &str| -> Result<String, Refusal> {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| refused(format!("{file} has no {what}")))
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let bytes = engine
        .decode(text(&evidence["envelope"], "evidence.envelope")?)
        .map_err(|_| refused("evidence.envelope is not base64".into()))?;
    let seal = engine
        .decode(text(&evidence["seal"], "evidence.seal (not sealed yet?)")?)
        .map_err(|_| refused("evidence.seal is not base64".into()))?;
    let key_id = text(&evidence["key_id"], "evidence.key_id")?;
    let stated = text(&evidence["sha256"], "evidence.sha256")?;
    let keys = trusted_keys(&args.keys, &key_id)?;
    let (_, public_key) = keys
        .iter()
        .find(|(kid, _)| *kid == key_id)
        .ok_or_else(|| refused(format!("no key with kid {key_id:?} in the key set")))?;
    let opened = envelope::verify(&bytes, &stated, &seal, &key_id, public_key)
        .map_err(|e| refused(e.to_string()))?;
    let mut checks = vec![
        "the envelope is canonical JSON (RFC 8785) and its SHA-256 matches".to_owned(),
        "the signature image matches image_hash".to_owned(),
        format!("the token's seal verifies under key {key_id}"),
    ];
    if reply["pending_id"].as_str() != Some(opened.pending_id.as_str()) {
        return Err(refused("the envelope is for another request".into()));
    }
    // The document's signature, made from the same hash the envelope binds.
    let armored = text(&reply["signature"], "signature (the document's SSHSIG)")?;
    let sshsig = sshsign::sshsig::SshSig::from_armored(&armored)
        .map_err(|e| refused(format!("the SSHSIG: {e}")))?;
    let digest: [u8; 64] = opened
        .payload_hash
        .strip_prefix("sha512:")
        .and_then(sshsign::hex::decode)
        .and_then(|d| d.try_into().ok())
        .ok_or_else(|| refused("payload_hash is not sha512:<hex>".into()))?;
    let namespace = opened.scope["namespace"].as_str().unwrap_or_default();
    sshsig
        .verify_sha512_digest(namespace, &digest)
        .map_err(|e| refused(format!("the SSHSIG: {e}")))?;
    let signer_key = sshsign::pubkey::fingerprint(sshsig.public_key());
    checks.push(format!(
        "the document's SSHSIG ({namespace}) verifies over payload_hash, by {signer_key}"
    ));
    if let Some(expected) = &args.signer_key {
        let expected = sshsign::pubkey::parse_ed25519(expected)
            .ok_or_else(|| Refusal("--signer-key is an ssh-ed25519 line".into()))?;
        if &expected != sshsig.public_key() {
            return Err(refused("the document was signed by another key".into()));
        }
        checks.push("the document's key is the expected one".into());
    }
    let image = opened.image().unwrap_or_default();
    if let Some(path) = &args.write_image {
        std::fs::write(path, &image)
            .map_err(|e| Refusal(format!("writing {}: {e}", path.display())))?;
    }
    Ok(json!({
        "verified": true,
        "checked": checks,
        "pending_id": opened.pending_id,
        "signer": opened.signer,
        "signer_ip": opened.signer_ip,
        "captured_at": opened.captured_at,
        "decision": opened.decision,
        "payload_hash": opened.payload_hash,
        "image_bytes": image.len(),
    }))
}
