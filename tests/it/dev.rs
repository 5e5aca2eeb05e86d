//! `sshsign-server dev`: from an empty directory to a working appliance, then reused.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Stdio};

use serde_json::Value;

use crate::common::{SERVER, clean_command};

fn start(dir: &Path) -> (Child, Value) {
    let mut child = clean_command(SERVER)
        .args(["dev", "--dir"])
        .arg(dir)
        .env("SSHSIGN_LISTEN_ADDR", "127.0.0.1:0")
        .env("SSHSIGN_HTTP_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(!line.is_empty(), "dev did not start");
    (child, serde_json::from_str(&line).unwrap())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn dev_makes_a_working_appliance_and_reuses_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("appliance");
    let (mut first, listening) = start(&dir);
    let fingerprint = listening["host_key_fingerprint"].clone();
    assert!(fingerprint.as_str().unwrap().starts_with("SHA256:"));
    assert!(listening["ssh"].as_str().unwrap().starts_with("127.0.0.1:"));

    for secret in ["user-pin", "so-pin", "host_key"] {
        assert_eq!(mode(&dir.join(secret)), 0o600, "{secret}");
    }
    assert_eq!(mode(&dir), 0o700);
    assert!(dir.join("softhsm2.conf").is_file() && dir.join("sshsign.db").exists());

    // Browsers accept passkeys on localhost, not on an IP address.
    let url = listening["url"].as_str().unwrap();
    let port = listening["http"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap();
    assert_eq!(url, format!("http://localhost:{port}"));

    // The instructions on stderr say how to connect, configure git and ask a human.
    let mut stderr = BufReader::new(first.stderr.take().unwrap());
    let mut instructions = String::new();
    while !instructions.contains("/verify") {
        let mut line = String::new();
        assert_ne!(stderr.read_line(&mut line).unwrap(), 0, "{instructions}");
        instructions.push_str(&line);
    }
    assert!(
        instructions.contains("gpg.ssh.program sshsign"),
        "{instructions}"
    );
    assert!(
        instructions.contains(fingerprint.as_str().unwrap()),
        "{instructions}"
    );
    for step in [
        "enroll passkey",
        "api-key create",
        &format!("{url}/api/v1/approvals/request"),
    ] {
        assert!(instructions.contains(step), "{step}: {instructions}");
    }
    let _ = first.kill();
    let _ = first.wait();

    // The second start reuses the token, keys and host key.
    let (mut second, again) = start(&dir);
    assert_eq!(again["host_key_fingerprint"], fingerprint);
    let _ = second.kill();
    let _ = second.wait();
}
