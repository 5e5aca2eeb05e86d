//! `sshsign`: git's `gpg.ssh.program` for signing through the appliance, and a CLI for its
//! commands. See `sshsign::shim` for the forms it accepts.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgGroup, Parser, Subcommand};
use serde_json::Value;
use sshsign::attestation;
use sshsign::auditor::{self, Memory};
use sshsign::client::{ClientConfig, Connection};
use sshsign::gate;
use sshsign::shim::{self, Error};
use sshsign::verifier::{self, Refusal};

/// The command line: `-Y ...` keeps ssh-keygen's grammar (git runs it); everything else is
/// parsed here, and an unknown flag or a stray argument exits 2 with the usage.
#[derive(Debug, Parser)]
#[command(
    name = "sshsign",
    version = sshsign::VERSION,
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
    /// Ask for a person's approval over the REST API and, with --wait, wait for it: a gate for
    /// pipelines (exit 0 approved and verified, 1 rejected, 3 expired or timed out).
    #[command(subcommand)]
    Approval(ApprovalCommand),
    /// Check a signed approval decision offline; exit 0 only for an approval of what you name.
    VerifyApproval(VerifyApprovalArgs),
    /// Serve the Model Context Protocol on stdin and stdout, for agent hosts: tools to sign,
    /// ask for approvals and wait for them, verify decisions, list keys and prove audit
    /// entries, through the appliance, as you (your SSH key, the pinned host key).
    Mcp {
        /// The appliance's decision keys, saved from /.well-known/jwks.json, that
        /// verify_approval trusts (default: read over SSH from the appliance).
        #[arg(long)]
        jwks: Option<PathBuf>,
    },
    /// Check a get-envelope reply offline: the seal, the drawn image and the SSHSIG.
    VerifyEnvelope(VerifyEnvelopeArgs),
    /// Check offline that a device generated a key: an attestation file (`sshsign-server
    /// provision attest --to FILE`) against the vendor's root certificate; exit 0 only if the
    /// chain reaches the root, is over the key, and the device says it generated it.
    VerifyAttestation {
        /// The vendor's root certificate (PEM), e.g. Yubico's YubiHSM root CA.
        #[arg(long)]
        root: PathBuf,
        /// The key the attestation must be over, as an ssh-ed25519 line (default: the one the
        /// file names).
        #[arg(long)]
        public_key: Option<String>,
        file: PathBuf,
    },
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
    Check {
        #[command(flatten)]
        from: AuditFrom,
    },
    /// Fetch and check one of your entries against the checkpoint (from tiles: any entry, by
    /// its public form).
    Prove {
        /// The entry's index.
        #[arg(long)]
        index: u64,
        #[command(flatten)]
        from: AuditFrom,
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

/// Where `audit check` and `audit prove` read the log, and the key they hold it to.
#[derive(Debug, clap::Args)]
struct AuditFrom {
    /// Read the log's tiles instead of asking over SSH: the URL of its root
    /// (`https://appliance.example/audit`), or a directory that holds a copy.
    #[arg(long, env = "SSHSIGN_AUDIT_TILES", value_name = "URL|DIR")]
    tiles: Option<String>,
    /// The log's verifier key (origin+keyhash+key), instead of the one pinned at first use.
    #[arg(long, env = "SSHSIGN_AUDIT_KEY", value_name = "VKEY")]
    key: Option<String>,
    /// Require this cosigner's cosignature on the checkpoint (repeat for each, or separate with
    /// commas): where several appliances share the log, each one's `cosigner_key` from
    /// `sshsign audit-checkpoint`.
    #[arg(
        long = "cosigner",
        env = "SSHSIGN_AUDIT_COSIGNERS",
        value_name = "VKEY",
        value_delimiter = ','
    )]
    cosigners: Vec<String>,
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

#[derive(Debug, Subcommand)]
enum ApprovalCommand {
    /// Ask for a decision; print the approval page's address; with --wait, wait for it.
    ///
    /// The API key comes from --api-key-file or SSHSIGN_API_KEY, never the command line. Exit
    /// status: 0 approved (and the decision verifies offline, bound to this request, action and
    /// metadata), 1 rejected or not verifiable or the appliance could not be asked, 2 usage,
    /// 3 expired or --timeout passed.
    Request(ApprovalRequestArgs),
}

#[derive(Debug, clap::Args)]
struct ApprovalRequestArgs {
    /// What the approvers are asked to approve (shown on their page).
    #[arg(long)]
    action: String,
    /// A JSON object shown with the action (up to 4 KB): the commit, the environment...
    #[arg(long)]
    metadata: Option<PathBuf>,
    /// Who decides: a user id (usr_...) or an SSH key fingerprint; repeat for several
    /// (default: the API key's owner).
    #[arg(long = "approver")]
    approvers: Vec<String>,
    /// Approvals needed of the approvers (default 1).
    #[arg(long)]
    threshold: Option<u32>,
    /// How an approver may prove themselves; repeat for several (default passkey and totp).
    #[arg(long = "method", value_parser = ["passkey", "totp", "ssh"])]
    methods: Vec<String>,
    /// How long the request stays open (1m to 7d; default 24h).
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<std::time::Duration>,
    /// Wait for the decision (long polling).
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this long, exit 3 (default 30m).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30m", requires = "wait")]
    timeout: std::time::Duration,
    /// Keep the request as last read, with its signed decision, in this file.
    #[arg(long)]
    output: Option<PathBuf>,
    /// The appliance's HTTPS address (its approval base URL).
    #[arg(long, env = "SSHSIGN_URL")]
    url: String,
    /// A file holding the API key (else SSHSIGN_API_KEY).
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// The appliance's decision keys, saved from /.well-known/jwks.json (default: read them
    /// from the appliance when the decision comes).
    #[arg(long)]
    jwks: Option<PathBuf>,
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
        Command::Approval(ApprovalCommand::Request(args)) => Ok(approval_request(args).await),
        Command::VerifyApproval(args) => Ok(report(verify_approval(args))),
        Command::Mcp { jwks } => mcp(jwks.as_deref()).await,
        Command::VerifyEnvelope(args) => Ok(report(verify_envelope(args))),
        Command::VerifyAttestation {
            root,
            public_key,
            file,
        } => Ok(report(verify_attestation(
            &root,
            public_key.as_deref(),
            &file,
        ))),
        Command::Appliance(words) => passthrough(&words).await,
    }
}

/// `sshsign mcp`: serves until the agent host closes stdin.
async fn mcp(jwks: Option<&Path>) -> Result<i32, Error> {
    let jwks = jwks.map(read_json).transpose()?;
    if let Some(jwks) = &jwks {
        verifier::TrustedKeys::from_jwks(jwks).map_err(|r| Error::Usage(r.0))?;
    }
    let options = sshsign::mcp::Options { jwks, memory: None };
    sshsign::mcp::serve_stdio(ClientConfig::load()?, options)
        .await
        .map_err(|e| Error::Usage(format!("mcp: {e}")))?;
    Ok(0)
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
    let keys = shim::all_keys(&connection).await?;
    connection.close().await;
    let key = keys
        .iter()
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

/// `sshsign audit check | prove --index N | verify --key VKEY [--old FILE] FILE`.
async fn audit(command: AuditCommand) -> Result<i32, Error> {
    match command {
        AuditCommand::Verify { key, old, file } => audit_verify(&key, old.as_deref(), &file),
        AuditCommand::Check { from } => audit_online(None, from).await,
        AuditCommand::Prove { index, from } => audit_online(Some(index), from).await,
    }
}

/// Fetches the checkpoint (and, with `index`, that entry's proof), over SSH or from tiles,
/// and checks it.
async fn audit_online(index: Option<u64>, from: AuditFrom) -> Result<i32, Error> {
    let memory = Memory::default_location()
        .ok_or_else(|| Error::Usage("set HOME or XDG_STATE_HOME to keep audit state".into()))?;
    let pinned = from.key.filter(|key| !key.is_empty());
    let report = match from.tiles.filter(|tiles| !tiles.is_empty()) {
        Some(tiles) => {
            let source = auditor::tiles::TileSource::parse(&tiles)?;
            auditor::tiles::check_tiles(&memory, pinned, &from.cosigners, index, &source).await?
        }
        None => {
            let connection = Connection::connect(&ClientConfig::load()?).await?;
            let fetch = async |words: Vec<String>| -> Result<Value, Error> {
                shim::accepted(connection.run(&words, &[]).await?)
            };
            let outcome =
                auditor::check_online(&memory, pinned, &from.cosigners, index, fetch).await;
            connection.close().await;
            outcome?
        }
    };
    print(&serde_json::to_value(report).unwrap_or_default());
    Ok(0)
}

/// Offline: checks a saved `audit-checkpoint`, `audit-proof` or `audit-consistency` reply.
fn audit_verify(vkey: &str, old: Option<&Path>, file: &Path) -> Result<i32, Error> {
    let reply = read_json(file)?;
    let old = old.map(read_json).transpose()?;
    let report = auditor::check_saved(&reply, old.as_ref(), vkey).map_err(|e| match e {
        auditor::SavedError::NeedsOld => {
            Error::Usage("a consistency proof is checked from --old CHECKPOINT_FILE".into())
        }
        auditor::SavedError::Audit(e) => Error::from(e),
    })?;
    print(&serde_json::to_value(report).unwrap_or_default());
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
/// `/.well-known/jwks.json`, saved), or `--public-key KEY`.
fn trusted_keys(keys: &TrustedKeys) -> Result<verifier::TrustedKeys, Refusal> {
    match (&keys.jwks, &keys.public_key) {
        (Some(path), _) => verifier::TrustedKeys::from_jwks(&read_json(path)?)
            .map_err(|e| Refusal(format!("{}: {e}", path.display()))),
        (None, key) => verifier::TrustedKeys::from_public_key(key.as_deref().unwrap_or_default())
            .map_err(|e| Refusal(format!("--public-key: {e}"))),
    }
}

/// The pipeline gate (see [`sshsign::gate`]): progress on stderr, the request as last read on
/// stdout (and in `--output`).
async fn approval_request(args: ApprovalRequestArgs) -> i32 {
    let usage = |why: String| {
        eprintln!("sshsign: {why}");
        gate::USAGE
    };
    let api_key = match &args.api_key_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text.trim().to_owned(),
            Err(e) => return usage(format!("{}: {e}", path.display())),
        },
        None => match std::env::var("SSHSIGN_API_KEY") {
            Ok(text) => text.trim().to_owned(),
            Err(_) => {
                return usage("give the API key with --api-key-file or SSHSIGN_API_KEY".into());
            }
        },
    };
    let metadata = match &args.metadata {
        None => serde_json::Map::new(),
        Some(path) => match read_json(path).map(|v| v.as_object().cloned()) {
            Ok(Some(map)) => map,
            Ok(None) => return usage(format!("{}: the metadata is a JSON object", path.display())),
            Err(refusal) => return usage(refusal.to_string()),
        },
    };
    let jwks = match args.jwks.as_deref().map(read_json).transpose() {
        Ok(jwks) => jwks,
        Err(refusal) => return usage(refusal.to_string()),
    };
    let ask = gate::Ask {
        url: args.url,
        api_key: api_key.into(),
        action: args.action,
        metadata,
        approvers: args.approvers,
        threshold: args.threshold,
        methods: args.methods,
        ttl: args.ttl,
        wait: args.wait.then_some(args.timeout),
        jwks,
    };
    let outcome = gate::request(ask, |line| eprintln!("sshsign: {line}")).await;
    if !outcome.document.is_null() {
        let text = serde_json::to_string_pretty(&outcome.document).unwrap_or_default();
        println!("{text}");
        if let Some(path) = &args.output
            && let Err(e) = std::fs::write(path, text + "\n")
        {
            eprintln!("sshsign: {}: {e}", path.display());
            return gate::REFUSED;
        }
    }
    outcome.status
}

/// Offline: checks a signed decision (see [`verifier::approval`]).
fn verify_approval(args: VerifyApprovalArgs) -> Result<Value, Refusal> {
    let document = read_json(&args.file)?;
    let action = match (args.action, &args.metadata) {
        (Some(action), Some(file)) => {
            let metadata = read_json(file)?;
            let metadata = metadata.as_object().cloned().ok_or_else(|| {
                Refusal(format!("{}: the metadata is a JSON object", file.display()))
            })?;
            Some((action, metadata))
        }
        _ => None,
    };
    let method = match args.method.as_deref() {
        Some(name) => Some(
            serde_json::from_value(Value::from(name))
                .map_err(|_| Refusal(format!("unknown method {name}")))?,
        ),
        None => None,
    };
    let expected = verifier::Expected {
        request_id: args.request_id,
        action,
        approver: args.approver,
        method,
    };
    let report = verifier::approval(&document, &trusted_keys(&args.keys)?, &expected)?;
    Ok(serde_json::to_value(report).unwrap_or_default())
}

/// Offline: checks an attestation file against a vendor root (see [`sshsign::attestation`]).
fn verify_attestation(
    root: &Path,
    public_key: Option<&str>,
    file: &Path,
) -> Result<Value, Refusal> {
    let roots = std::fs::read(root)
        .map_err(|e| Refusal(format!("{}: {e}", root.display())))
        .and_then(|pem| {
            attestation::pem_certificates(&pem)
                .map_err(|e| Refusal(format!("{}: {e}", root.display())))
        })?;
    let attested: attestation::AttestationFile = serde_json::from_value(read_json(file)?)
        .map_err(|e| Refusal(format!("{}: not an attestation file: {e}", file.display())))?;
    if let Some(line) = public_key {
        let key = sshsign::pubkey::parse_ed25519(line)
            .ok_or_else(|| Refusal("--public-key is an ssh-ed25519 line".into()))?;
        if sshsign::hex::encode(&key) != attested.public_key {
            return Err(Refusal(format!(
                "{} attests another key than --public-key",
                file.display()
            )));
        }
    }
    let report = attestation::verify(&attested, &roots, sshsign::time::now())
        .map_err(|e| Refusal(e.to_string()))?;
    Ok(serde_json::to_value(report).unwrap_or_default())
}

/// Offline: checks a `get-envelope` reply (see [`verifier::envelope`]), and writes the drawn
/// signature where asked.
fn verify_envelope(args: VerifyEnvelopeArgs) -> Result<Value, Refusal> {
    let reply = read_json(&args.file)?;
    let signer_key = match &args.signer_key {
        Some(line) => Some(
            sshsign::pubkey::parse_ed25519(line)
                .ok_or_else(|| Refusal("--signer-key is an ssh-ed25519 line".into()))?,
        ),
        None => None,
    };
    let report = verifier::envelope(&reply, &trusted_keys(&args.keys)?, signer_key.as_ref())?;
    if let Some(path) = &args.write_image {
        std::fs::write(path, &report.image)
            .map_err(|e| Refusal(format!("writing {}: {e}", path.display())))?;
    }
    Ok(serde_json::to_value(report).unwrap_or_default())
}
