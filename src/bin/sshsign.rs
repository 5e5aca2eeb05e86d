//! `sshsign`: git's `gpg.ssh.program` for signing through the appliance, and a CLI for its
//! commands. See `sshsign::shim` for the forms it accepts.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use serde_json::{Value, json};
use sshsign::auditor::{self, Memory, Seen};
use sshsign::client::{ClientConfig, Connection};
use sshsign::shim::{self, Error};

const USAGE: &str = "usage:
  sshsign -Y sign -n NAMESPACE -f KEY [FILE...]      sign through the appliance (git's gpg.ssh.program)
  sshsign -Y verify|find-principals|check-novalidate|match-principals ...   (run by ssh-keygen)
  sshsign allowed-signers --key-id ID --principal EMAIL   print an allowed_signers line
  sshsign audit check                                fetch and check the audit log's checkpoint
  sshsign audit prove --index N                      fetch and check one of your audit entries
  sshsign audit verify --key VKEY [--old FILE] FILE  check a saved audit-* reply offline
  sshsign verify-approval (--jwks FILE | --public-key KEY) [--action TEXT] [--approver USER]
                         [--method passkey|totp|ssh] FILE
                                                     check a signed approval decision offline
  sshsign verify-envelope (--jwks FILE | --public-key KEY) [--signer-key KEY]
                          [--write-image PNG] FILE   check a get-envelope reply offline
  sshsign COMMAND [FLAGS]                            run an appliance command (sshsign help)
The appliance is SSHSIGN_HOST / SSHSIGN_PORT (or ~/.config/sshsign/config.toml).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run(args)),
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

async fn run(args: Vec<String>) -> Result<i32, Error> {
    match args.first().map(String::as_str) {
        None | Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(0)
        }
        Some(first) if first.starts_with('-') => {
            let parsed = shim::parse_keygen_args(&args)?;
            match parsed.operation.as_deref() {
                Some("sign") => shim::sign(parsed).await,
                Some("verify" | "find-principals" | "check-novalidate" | "match-principals") => {
                    shim::delegate_to_ssh_keygen(&args)
                }
                _ => Err(Error::Usage(USAGE.to_owned())),
            }
        }
        Some("allowed-signers") => allowed_signers(&args[1..]).await,
        Some("audit") => audit(&args[1..]).await,
        Some("verify-approval") => verify_approval(&args[1..]),
        Some("verify-envelope") => verify_envelope(&args[1..]),
        Some(_) => passthrough(&args).await,
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

async fn allowed_signers(args: &[String]) -> Result<i32, Error> {
    let (Some(key_id), Some(principal)) = (flag(args, "--key-id"), flag(args, "--principal"))
    else {
        return Err(Error::Usage(
            "usage: sshsign allowed-signers --key-id ID --principal EMAIL".to_owned(),
        ));
    };
    let connection = Connection::connect(&ClientConfig::load()?).await?;
    let reply = shim::accepted(connection.run(&["keys".to_owned()], &[]).await?)?;
    connection.close().await;
    let key = reply["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["key_id"] == key_id.as_str())
        .ok_or_else(|| Error::Usage(format!("you hold no key {key_id}")))?;
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
    let line = shim::allowed_signers_line(
        &principal,
        key["public_key"].as_str().unwrap_or_default(),
        &namespaces,
    );
    println!("{line}");
    Ok(0)
}

/// The value after `name` in `args`.
fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
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
async fn audit(args: &[String]) -> Result<i32, Error> {
    match args.first().map(String::as_str) {
        Some("verify") => audit_verify(&args[1..]),
        Some(online @ ("check" | "prove")) => {
            let connection = Connection::connect(&ClientConfig::load()?).await?;
            let outcome = audit_online(&connection, online, &args[1..]).await;
            connection.close().await;
            outcome
        }
        _ => Err(Error::Usage(
            "usage: sshsign audit check | prove --index N | verify --key VKEY [--old FILE] FILE"
                .to_owned(),
        )),
    }
}

async fn audit_online(connection: &Connection, what: &str, args: &[String]) -> Result<i32, Error> {
    let memory = Memory::default_location()
        .ok_or_else(|| Error::Usage("set HOME or XDG_STATE_HOME to keep audit state".into()))?;
    let run =
        |words: Vec<String>| async move { shim::accepted(connection.run(&words, &[]).await?) };
    let reply = match what {
        "prove" => {
            let index = flag(args, "--index")
                .ok_or_else(|| Error::Usage("usage: sshsign audit prove --index N".into()))?;
            run(vec!["audit-proof".into(), "--index".into(), index]).await?
        }
        _ => run(vec!["audit-checkpoint".into()]).await?,
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
    if what == "prove" {
        let (_, entry) = auditor::check_inclusion(&reply, &vkey).map_err(audit_failed)?;
        out["index"] = reply["index"].clone();
        out["entry"] = serde_json::to_value(entry).unwrap_or_default();
    }
    print(&out);
    Ok(0)
}

/// Offline: checks a saved `audit-checkpoint`, `audit-proof` or `audit-consistency` reply.
fn audit_verify(args: &[String]) -> Result<i32, Error> {
    let usage = || Error::Usage("usage: sshsign audit verify --key VKEY [--old FILE] FILE".into());
    let vkey = flag(args, "--key").ok_or_else(usage)?;
    let file = args
        .last()
        .filter(|f| !f.starts_with("--"))
        .ok_or_else(usage)?;
    let read = |path: &str| -> Result<Value, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Usage(format!("{path}: not JSON: {e}")))
    };
    let reply = read(file)?;
    let out = if reply.get("entry").is_some() {
        let (checkpoint, entry) = auditor::check_inclusion(&reply, &vkey).map_err(audit_failed)?;
        json!({ "verified": "inclusion", "size": checkpoint.size, "index": reply["index"], "entry": entry })
    } else if reply.get("from").is_some() {
        let old_file = flag(args, "--old").ok_or_else(usage)?;
        let old_reply = read(&old_file)?;
        let old =
            auditor::check_checkpoint(old_reply["checkpoint"].as_str().unwrap_or_default(), &vkey)
                .map_err(audit_failed)?;
        let new = auditor::check_consistency(&reply, &old, &vkey).map_err(audit_failed)?;
        json!({ "verified": "consistency", "from": old.size, "to": new.size })
    } else {
        let checkpoint =
            auditor::check_checkpoint(reply["checkpoint"].as_str().unwrap_or_default(), &vkey)
                .map_err(audit_failed)?;
        json!({ "verified": "checkpoint", "origin": checkpoint.origin, "size": checkpoint.size })
    };
    print(&out);
    Ok(0)
}

/// Reads a JSON file.
fn read_json(path: &str) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Usage(format!("{path}: not JSON: {e}")))
}

/// The appliance keys a verifier trusts: `--jwks FILE` (the appliance's
/// `/.well-known/jwks.json`, saved), or `--public-key KEY` (an ssh-ed25519 line or base64 of
/// 32 bytes), which stands for `kid`.
fn trusted_keys(
    args: &[String],
    kid: &str,
    usage: &dyn Fn() -> Error,
) -> Result<Vec<(String, [u8; 32])>, Error> {
    use sshsign::approval::decision;
    match (flag(args, "--jwks"), flag(args, "--public-key")) {
        (Some(path), None) => decision::jwks_keys(&read_json(&path)?)
            .map_err(|e| Error::Usage(format!("{path}: {e}"))),
        (None, Some(key)) => {
            let bytes = sshsign::pubkey::parse_ed25519(&key)
                .or_else(|| {
                    use base64::Engine as _;
                    let engine = base64::engine::general_purpose::STANDARD;
                    engine.decode(&key).ok().and_then(|b| b.try_into().ok())
                })
                .ok_or_else(|| {
                    Error::Usage("--public-key is an ssh-ed25519 line or base64 of 32 bytes".into())
                })?;
            Ok(vec![(kid.to_owned(), bytes)])
        }
        _ => Err(usage()),
    }
}

/// The last argument, when it is not a flag: the file to check.
fn file_argument<'a>(args: &'a [String], usage: &dyn Fn() -> Error) -> Result<&'a String, Error> {
    args.last()
        .filter(|f| !f.starts_with("--"))
        .ok_or_else(usage)
}

/// Offline: checks a signed decision (as `GET /api/v1/approvals/{id}`, its `/verify` or the
/// `decision` object alone carries it) against a JWKS file or a public key, and says what it
/// checked.
fn verify_approval(args: &[String]) -> Result<i32, Error> {
    use sshsign::approval::decision::{self, SignedDecision, short_hash};
    let usage = || {
        Error::Usage(
            "usage: sshsign verify-approval (--jwks FILE | --public-key KEY) [--action TEXT] \
             [--approver USER] [--method passkey|totp|ssh] FILE"
                .into(),
        )
    };
    let file = file_argument(args, &usage)?;
    let document = read_json(file)?;
    // The decision may be the document itself (a /verify reply) or its "decision" member.
    let candidate = if document.get("signed_payload").is_some() {
        document.clone()
    } else {
        document["decision"].clone()
    };
    let signed: SignedDecision = serde_json::from_value(candidate)
        .map_err(|_| Error::Usage(format!("{file}: holds no signed decision")))?;
    let keys = trusted_keys(args, &signed.key_id, &usage)?;
    let checked = decision::verify(&signed, &keys)
        .map_err(|e| Error::Usage(format!("decision refused: {e}")))?;
    let mut checks = vec![
        "the payload is canonical JSON (RFC 8785)".to_owned(),
        format!(
            "the Ed25519 signature verifies under key {}",
            checked.key_id
        ),
    ];
    if let Some(action) = flag(args, "--action") {
        if short_hash(&action) != checked.payload.action {
            return Err(Error::Usage(
                "decision refused: it is for another action".into(),
            ));
        }
        checks.push("the action matches".into());
    }
    if let Some(method) = flag(args, "--method") {
        if checked.payload.method.as_str() != method {
            return Err(Error::Usage(format!(
                "decision refused: it was made by {}, not {method}",
                checked.payload.method.as_str()
            )));
        }
        checks.push(format!("the approver proved themselves by {method}"));
    }
    if let Some(approver) = flag(args, "--approver") {
        if short_hash(&approver) != checked.payload.approver {
            return Err(Error::Usage(
                "decision refused: another approver made it".into(),
            ));
        }
        checks.push("the approver matches".into());
    }
    print(&json!({
        "verified": true,
        "checked": checks,
        "payload": checked.payload,
    }));
    Ok(0)
}

/// Offline: checks a `get-envelope` reply for a request approved with a drawn signature: the
/// envelope's exact bytes against its SHA-256, the image against its hash, the token's seal
/// against the appliance's key, and the document's SSHSIG against the envelope's payload hash.
fn verify_envelope(args: &[String]) -> Result<i32, Error> {
    use base64::Engine as _;
    use sshsign::approval::envelope;
    let usage = || {
        Error::Usage(
            "usage: sshsign verify-envelope (--jwks FILE | --public-key KEY) [--signer-key KEY] \
             [--write-image PNG] FILE"
                .into(),
        )
    };
    let refused = |why: String| Error::Usage(format!("envelope refused: {why}"));
    let file = file_argument(args, &usage)?;
    let reply = read_json(file)?;
    let evidence = &reply["evidence"];
    let text = |value: &Value, what: &str| -> Result<String, Error> {
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
    let keys = trusted_keys(args, &key_id, &usage)?;
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
    if let Some(expected) = flag(args, "--signer-key") {
        let expected = sshsign::pubkey::parse_ed25519(&expected)
            .ok_or_else(|| Error::Usage("--signer-key is an ssh-ed25519 line".into()))?;
        if &expected != sshsig.public_key() {
            return Err(refused("the document was signed by another key".into()));
        }
        checks.push("the document's key is the expected one".into());
    }
    let image = opened.image().unwrap_or_default();
    if let Some(path) = flag(args, "--write-image") {
        std::fs::write(&path, &image).map_err(|source| Error::Io { path, source })?;
    }
    print(&json!({
        "verified": true,
        "checked": checks,
        "pending_id": opened.pending_id,
        "signer": opened.signer,
        "signer_ip": opened.signer_ip,
        "captured_at": opened.captured_at,
        "decision": opened.decision,
        "payload_hash": opened.payload_hash,
        "image_bytes": image.len(),
    }));
    Ok(0)
}
