//! `sshsign`: git's `gpg.ssh.program` for signing through the appliance, and a CLI for its
//! commands. See `sshsign::shim` for the forms it accepts.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use sshsign::client::{ClientConfig, Connection};
use sshsign::shim::{self, Error};

const USAGE: &str = "usage:
  sshsign -Y sign -n NAMESPACE -f KEY [FILE...]      sign through the appliance (git's gpg.ssh.program)
  sshsign -Y verify|find-principals|check-novalidate|match-principals ...   (run by ssh-keygen)
  sshsign allowed-signers --key-id ID --principal EMAIL   print an allowed_signers line
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
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(key_id), Some(principal)) = (flag("--key-id"), flag("--principal")) else {
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
