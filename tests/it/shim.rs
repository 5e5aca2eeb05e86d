//! The `sshsign` client: host key checking, stdin mode, verification hand-off, the CLI.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{
    Appliance, SHIM, User, clean_command, run_with_stdin, ssh_keygen_verify, write_file,
};

fn shim(user: &User, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut command: Command = clean_command(SHIM);
    command
        .args(args)
        .envs(user.shim_env())
        .envs(env.iter().copied())
        .env("HOME", "/nonexistent");
    run_with_stdin(&mut command, stdin)
}

/// `-Y verify` arguments as git passes them.
fn verify_args(namespace: &str, principal: &str, allowed: &Path, sig: &Path) -> Vec<String> {
    let (allowed, sig) = (allowed.display().to_string(), sig.display().to_string());
    [
        "-Y", "verify", "-n", namespace, "-I", principal, "-f", &allowed, "-s", &sig,
    ]
    .map(str::to_owned)
    .to_vec()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn unknown_and_changed_host_keys_are_refused_with_how_to_pin() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let dir = appliance.dir.path();

    let empty = write_file(dir, "empty_known_hosts", "");
    let unknown = shim(
        &alice,
        &["keys"],
        b"",
        &[("SSHSIGN_KNOWN_HOSTS", empty.to_str().unwrap())],
    );
    assert_eq!(unknown.status.code(), Some(255));
    let message = stderr(&unknown);
    assert!(
        message.contains(&appliance.host_key_fingerprint),
        "{message}"
    );
    assert!(message.contains("is not in"), "{message}");
    let pin_line = format!(
        "[127.0.0.1]:{} {}",
        appliance.ssh_addr.port(),
        appliance.host_key
    );
    assert!(message.contains(&pin_line), "{message}");
    assert!(
        message.contains("SSHSIGN_HOST_KEY_FINGERPRINT="),
        "{message}"
    );

    // A known_hosts entry for this host with another key: refused as a changed key.
    let other_key = dir.join("other_host_key");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_key)
        .status()
        .unwrap();
    assert!(made.success());
    let other_public = std::fs::read_to_string(other_key.with_extension("pub")).unwrap();
    let changed = write_file(
        dir,
        "changed_known_hosts",
        format!("[127.0.0.1]:{} {other_public}", appliance.ssh_addr.port()),
    );
    let refused = shim(
        &alice,
        &["keys"],
        b"",
        &[("SSHSIGN_KNOWN_HOSTS", changed.to_str().unwrap())],
    );
    assert_eq!(refused.status.code(), Some(255));
    let message = stderr(&refused);
    assert!(message.contains("DIFFERENT"), "{message}");
    assert!(message.contains("ssh-keygen -R"), "{message}");

    // The right key, listed plainly, hashed by stock ssh-keygen and also marked @revoked:
    // refused, as OpenSSH refuses it. Without the @revoked line the hashed entry is accepted.
    let hashed = write_file(dir, "hashed_known_hosts", format!("{pin_line}\n"));
    let hashing = Command::new("ssh-keygen")
        .args(["-q", "-H", "-f"])
        .arg(&hashed)
        .status()
        .unwrap();
    assert!(hashing.success());
    assert!(
        !std::fs::read_to_string(&hashed)
            .unwrap()
            .contains("127.0.0.1")
    );
    let accepted = shim(
        &alice,
        &["whoami"],
        b"",
        &[("SSHSIGN_KNOWN_HOSTS", hashed.to_str().unwrap())],
    );
    assert!(accepted.status.success(), "{}", stderr(&accepted));
    let revoked = write_file(
        dir,
        "revoked_known_hosts",
        format!("{pin_line}\n@revoked * {}\n", appliance.host_key),
    );
    let refused = shim(
        &alice,
        &["whoami"],
        b"",
        &[("SSHSIGN_KNOWN_HOSTS", revoked.to_str().unwrap())],
    );
    assert_eq!(refused.status.code(), Some(255));
    assert!(
        stderr(&refused).contains("@revoked"),
        "{}",
        stderr(&refused)
    );

    // A pinned fingerprint replaces known_hosts; a wrong pin is refused.
    let pinned = shim(
        &alice,
        &["whoami"],
        b"",
        &[
            ("SSHSIGN_KNOWN_HOSTS", empty.to_str().unwrap()),
            (
                "SSHSIGN_HOST_KEY_FINGERPRINT",
                &appliance.host_key_fingerprint,
            ),
        ],
    );
    assert!(pinned.status.success(), "{}", stderr(&pinned));
    let wrong = shim(
        &alice,
        &["whoami"],
        b"",
        &[(
            "SSHSIGN_HOST_KEY_FINGERPRINT",
            "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )],
    );
    assert_eq!(wrong.status.code(), Some(255));
    assert!(
        stderr(&wrong).contains("pins SHA256:AAAA"),
        "{}",
        stderr(&wrong)
    );
}

#[test]
fn sign_from_stdin_and_hand_verification_to_ssh_keygen() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let created = alice.cmd("create-key --scope file");
    let key_id = created.ok()["key_id"].as_str().unwrap().to_owned();
    let public_key = created.json["public_key"].as_str().unwrap().to_owned();

    let payload = b"release v1.2.3\n";
    let signed = shim(
        &alice,
        &["-Y", "sign", "-n", "file", "-f", &key_id],
        payload,
        &[],
    );
    assert!(signed.status.success(), "{}", stderr(&signed));
    let signature = String::from_utf8(signed.stdout).unwrap();
    assert!(signature.starts_with("-----BEGIN SSH SIGNATURE-----"));
    let dir = appliance.dir.path();
    let verified = ssh_keygen_verify(dir, "alice", &public_key, "file", &signature, payload);
    assert!(verified.status.success(), "{}", stderr(&verified));

    // Files: FILE.sig is written next to FILE, as ssh-keygen does.
    let file = write_file(dir, "release.txt", payload);
    let signed = shim(
        &alice,
        &[
            "-Y",
            "sign",
            "-n",
            "file",
            "-f",
            &key_id,
            file.to_str().unwrap(),
        ],
        b"",
        &[],
    );
    assert!(signed.status.success(), "{}", stderr(&signed));
    let sig_file = dir.join("release.txt.sig");
    assert_eq!(
        std::fs::read_to_string(&sig_file).unwrap().lines().next(),
        signature.lines().next()
    );

    // check-novalidate and verify go to ssh-keygen with git's arguments and exit codes.
    let allowed = write_file(dir, "allowed", format!("alice {public_key}\n"));
    let args = verify_args("file", "alice", &allowed, &sig_file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let good = shim(&alice, &args, payload, &[]);
    assert!(good.status.success(), "{}", stderr(&good));
    let bad = shim(&alice, &args, b"something else", &[]);
    assert!(!bad.status.success());
    let novalidate = shim(
        &alice,
        &[
            "-Y",
            "check-novalidate",
            "-n",
            "file",
            "-s",
            sig_file.to_str().unwrap(),
        ],
        payload,
        &[],
    );
    assert!(novalidate.status.success(), "{}", stderr(&novalidate));

    // Refusals come back with the appliance's code and ssh-keygen's failure status.
    let refused = shim(
        &alice,
        &["-Y", "sign", "-n", "git", "-f", &key_id],
        payload,
        &[],
    );
    assert_eq!(refused.status.code(), Some(255));
    assert!(
        stderr(&refused).contains("scope_denied"),
        "{}",
        stderr(&refused)
    );
    let bad_key = shim(
        &alice,
        &["-Y", "sign", "-n", "file", "-f", "/no/such/key"],
        payload,
        &[],
    );
    assert_eq!(bad_key.status.code(), Some(255));
    assert!(
        stderr(&bad_key).contains("user.signingkey"),
        "{}",
        stderr(&bad_key)
    );
}

#[test]
fn the_cli_runs_appliance_commands_and_prints_allowed_signers() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let keys = shim(
        &alice,
        &["create-key", "--constraints", r#"{"n": {"max": 3}}"#],
        b"",
        &[],
    );
    assert!(keys.status.success(), "{}", stderr(&keys));
    let created: serde_json::Value = serde_json::from_slice(&keys.stdout).unwrap();
    assert_eq!(created["authorization"]["constraints"]["n"]["max"], 3);
    let key_id = created["key_id"].as_str().unwrap();

    let unknown = shim(&alice, &["frobnicate"], b"", &[]);
    assert_eq!(unknown.status.code(), Some(2));
    let line = shim(
        &alice,
        &[
            "allowed-signers",
            "--key-id",
            key_id,
            "--principal",
            "a@example.com",
        ],
        b"",
        &[],
    );
    assert!(line.status.success(), "{}", stderr(&line));
    let line = String::from_utf8(line.stdout).unwrap();
    let public = created["public_key"].as_str().unwrap();
    let without_comment: Vec<&str> = public.split_whitespace().take(2).collect();
    assert_eq!(
        line.trim(),
        format!(
            "a@example.com namespaces=\"git\" {}",
            without_comment.join(" ")
        )
    );
}

#[test]
fn every_subcommand_refuses_unknown_flags_and_stray_arguments() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let created = alice.cmd("create-key --scope file");
    let key_id = created.ok()["key_id"].as_str().unwrap().to_owned();
    let dir = appliance.dir.path();
    let any = write_file(dir, "any.json", "{}");
    let any = any.to_str().unwrap();
    // Each of these once ran with the mistyped flag ignored and the check it meant skipped.
    for args in [
        vec![
            "allowed-signers",
            "--key-id",
            &key_id,
            "--principal",
            "a@x",
            "--no-such-flag",
        ],
        vec![
            "allowed-signers",
            "--key-id",
            &key_id,
            "--principal",
            "a@x",
            "stray",
        ],
        vec![
            "allowed-signers",
            "--key-id",
            &key_id,
            "--principal",
            "a@x",
            "--valid-after",
            "yesterday",
        ],
        vec!["allowed-signers", "--key-id", &key_id],
        vec!["audit", "check", "--bogus"],
        vec!["audit", "prove"],
        vec!["audit", "verify", "--key", "k"],
        vec!["audit", "frobnicate"],
        vec![
            "verify-approval",
            "--jwks",
            any,
            "--request-id",
            "apr_x",
            "--aprover",
            "bob",
            any,
        ],
        vec![
            "verify-approval",
            "--jwks",
            any,
            "--public-key",
            "k",
            "--request-id",
            "apr_x",
            any,
        ],
        vec!["verify-approval", "--jwks", any, any],
        vec!["verify-envelope", "--jwks", any, "--signer", "k", any],
        vec!["verify-envelope", any],
        vec!["--no-such-flag"],
    ] {
        let out = shim(&alice, &args, b"", &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("Usage") || stderr(&out).contains("--help"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // ssh-keygen's form keeps its grammar, and an unknown option there fails too.
    let out = shim(
        &alice,
        &["-Y", "sign", "-n", "file", "-Z", "-f", &key_id],
        b"x",
        &[],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown option -Z"),
        "{}",
        stderr(&out)
    );

    // --valid-after and --valid-before are written as ssh-keygen reads them, and it honours them.
    let line = |extra: &[&str]| {
        let mut args = vec![
            "allowed-signers",
            "--key-id",
            &key_id,
            "--principal",
            "alice",
        ];
        args.extend_from_slice(extra);
        let out = shim(&alice, &args, b"", &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let past = line(&["--valid-after", "20200101", "--valid-before", "20991231Z"]);
    assert!(
        past.contains(r#"namespaces="file",valid-after="20200101",valid-before="20991231Z""#),
        "{past}"
    );
    let future = line(&["--valid-after", "20990101"]);
    let payload = b"release\n";
    let signed = shim(
        &alice,
        &["-Y", "sign", "-n", "file", "-f", &key_id],
        payload,
        &[],
    );
    assert!(signed.status.success(), "{}", stderr(&signed));
    let sig = write_file(dir, "release.sig", &signed.stdout);
    for (allowed, ok) in [(past, true), (future, false)] {
        let file = write_file(dir, "allowed_signers", allowed);
        let out = run_with_stdin(
            Command::new("ssh-keygen").args(verify_args("file", "alice", &file, &sig)),
            payload,
        );
        assert_eq!(out.status.success(), ok, "{}", stderr(&out));
    }
}
