//! `sshsign approval request --wait`, the gate for pipelines: it asks over REST with an API key,
//! prints the page, waits by long polling, and exits 0 only for an approval that verifies
//! offline; 1 rejected, 2 usage, 3 expired or timed out. And `GET …?wait=` itself.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::approvals::{api_key, create, get};
use crate::common::{Appliance, SHIM, User, clean_command, offline_check, write_file};

/// Starts the gate with `args`; returns the child and the request id it printed.
fn start_gate(appliance: &Appliance, key: &str, args: &[&str]) -> (Gate, String) {
    let mut child = clean_command(SHIM)
        .args(["approval", "request", "--url"])
        .arg(format!("http://{}", appliance.http_addr))
        .args(args)
        .env("SSHSIGN_API_KEY", key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    let id = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no request id: {said}"
        );
        said.push_str(&line);
        if let Some(id) = line.trim().strip_prefix("sshsign: approval requested: ") {
            break id.to_owned();
        }
    };
    // The rest of stderr is read on, so that the child never blocks on it, and kept for the
    // failure messages.
    let rest = std::thread::spawn(move || {
        let mut text = said;
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    (Gate { child, rest }, id)
}

struct Gate {
    child: Child,
    rest: std::thread::JoinHandle<String>,
}

/// The gate's exit status, and its stdout and stderr together, for messages.
fn finish(gate: Gate) -> (i32, Value, String) {
    let output = gate.child.wait_with_output().unwrap();
    let json = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let said = format!("{json}\n{}", gate.rest.join().unwrap());
    (output.status.code().unwrap_or(-1), json, said)
}

/// Waits until `alice` sees request `id` (the gate made it), then decides it over SSH.
fn decide(alice: &User, verb: &str, id: &str) {
    std::thread::sleep(Duration::from_millis(300));
    alice.cmd(&format!("{verb} --id {id}")).ok();
}

#[test]
fn the_gate_passes_an_approval_that_verifies_and_stops_the_rest() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let key = api_key(&alice, "approval:create,approval:read");
    let dir = appliance.dir.path();
    let metadata = write_file(
        dir,
        "deploy.json",
        r#"{"commit": "4b825dc", "env": "prod"}"#,
    );
    let kept = dir.join("decision.json");
    let common = [
        "--action",
        "deploy 4b825dc to prod",
        "--metadata",
        metadata.to_str().unwrap(),
        "--method",
        "ssh",
        "--wait",
        "--timeout",
        "60s",
    ];

    // Approved: exit 0, the decision kept, and it verifies offline with the saved JWKS.
    let mut args = common.to_vec();
    args.extend(["--output", kept.to_str().unwrap()]);
    let (child, id) = start_gate(&appliance, &key, &args);
    assert!(id.starts_with("apr_"), "{id}");
    let started = Instant::now();
    decide(&alice, "approve", &id);
    let (status, document, said) = finish(child);
    assert_eq!(status, 0, "{said}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(document["status"], "approved");
    let jwks = appliance.save_jwks(dir);
    let checked = offline_check("verify-approval", &jwks, &["--request-id", &id], &kept);
    assert!(checked.status.success(), "{checked:?}");

    // Rejected: exit 1.
    let (child, id) = start_gate(&appliance, &key, &common);
    decide(&alice, "deny", &id);
    let (status, document, said) = finish(child);
    assert_eq!(status, 1, "{said}");
    assert_eq!(document["status"], "rejected");

    // No decision within --timeout: exit 3, promptly.
    let mut args = common.to_vec();
    if let Some(timeout) = args.last_mut() {
        *timeout = "2s";
    }
    let (child, _) = start_gate(&appliance, &key, &args);
    let started = Instant::now();
    let (status, document, said) = finish(child);
    assert_eq!(status, 3, "{said}");
    assert_eq!(document["status"], "pending");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    // A decision key other than the appliance's: the approval does not verify, exit 1.
    let other = write_file(
        dir,
        "other-jwks.json",
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "x",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]})
        .to_string(),
    );
    let mut args = common.to_vec();
    args.extend(["--jwks", other.to_str().unwrap()]);
    let (child, id) = start_gate(&appliance, &key, &args);
    decide(&alice, "approve", &id);
    let (status, document, said) = finish(child);
    assert_eq!(status, 1, "{said}");
    assert_eq!(document["status"], "approved");
}

#[test]
fn the_gate_refuses_bad_usage_and_bad_keys_in_words() {
    let appliance = Appliance::start();
    let url = format!("http://{}", appliance.http_addr);
    let run = |env: &[(&str, &str)], extra: &[&str]| {
        let output = clean_command(SHIM)
            .args(["approval", "request", "--action", "x", "--url", &url])
            .args(extra)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (status, said) = run(&[], &[]);
    assert_eq!(status, 2, "{said}");
    assert!(said.contains("SSHSIGN_API_KEY"), "{said}");
    // The API key is never an argument.
    let (status, _) = run(&[], &["--api-key", "sk_x"]);
    assert_eq!(status, 2);
    let (status, said) = run(&[("SSHSIGN_API_KEY", "sk_not_a_key")], &[]);
    assert_eq!(status, 1, "{said}");
    assert!(said.contains("401"), "{said}");
    let (status, said) = run(&[("SSHSIGN_API_KEY", "k")], &["--timeout", "1m"]);
    assert_eq!(status, 2, "--timeout needs --wait: {said}");
    // The key never travels in clear to another machine (nothing is dialled: refused first).
    let output = clean_command(SHIM)
        .args(["approval", "request", "--action", "x"])
        .args(["--url", "http://sign.example.com"])
        .env("SSHSIGN_API_KEY", "k")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(said.contains("only over HTTPS"), "{said}");
}

#[test]
fn a_read_with_wait_returns_when_the_request_is_decided() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let key = api_key(&alice, "approval:create,approval:read");
    let created = create(
        &appliance,
        &key,
        json!({"action": "rotate the keys", "methods": ["ssh"]}),
    );
    let id = created["id"].as_str().unwrap().to_owned();
    // Still pending when the wait is up: the request as it is.
    let started = Instant::now();
    let pending = get(&appliance, &key, &format!("/api/v1/approvals/{id}?wait=1"));
    assert_eq!(pending.status, 200);
    assert_eq!(pending.json["status"], "pending");
    assert!(started.elapsed() >= Duration::from_secs(1));
    // Decided while a read waits: the read answers then, not at the end of its wait.
    let decider = {
        let (alice, id) = (alice.clone(), id.clone());
        std::thread::spawn(move || decide(&alice, "approve", &id))
    };
    let started = Instant::now();
    let decided = get(&appliance, &key, &format!("/api/v1/approvals/{id}?wait=30"));
    decider.join().unwrap();
    assert_eq!(decided.json["status"], "approved", "{:?}", decided.json);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    for bad in ["31", "-1", "soon", "1.5"] {
        let refused = get(
            &appliance,
            &key,
            &format!("/api/v1/approvals/{id}?wait={bad}"),
        );
        assert_eq!(refused.status, 400, "wait={bad}: {:?}", refused.json);
    }
}

/// `git` in `dir` with a fixed identity and no system or user configuration.
fn git_command(dir: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut command = clean_command("git");
    command
        .current_dir(dir)
        .args(["-c", "user.name=CI", "-c", "user.email=ci@example.com"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir);
    command
}

fn git(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    git_command(dir, args).output().unwrap()
}

#[test]
fn the_example_pre_receive_hook_admits_only_an_approved_merge() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let key = api_key(&alice, "approval:create,approval:read");
    let dir = appliance.dir.path();
    let jwks = appliance.save_jwks(dir);
    let server = dir.join("server.git");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    assert!(
        git(dir, &["init", "-q", "--bare", "server.git"])
            .status
            .success()
    );
    let hook = server.join("hooks/pre-receive");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/git-server/pre-receive"
        ),
        &hook,
    )
    .unwrap();
    // The hook runs with the pusher's environment here (a local push): sshsign on the PATH,
    // the pinned keys named.
    let shim_dir = std::path::Path::new(SHIM).parent().unwrap();
    let push = |args: &[&str]| {
        let mut words = vec!["push", server.to_str().unwrap()];
        words.extend_from_slice(args);
        let output = git_command(&work, &words)
            .env(
                "PATH",
                format!("{}:{}", shim_dir.display(), std::env::var("PATH").unwrap()),
            )
            .env("SSHSIGN_JWKS", &jwks)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert!(git(&work, &["init", "-q", "-b", "main"]).status.success());
    let commit = |message: &str| {
        assert!(
            git(&work, &["commit", "-q", "--allow-empty", "-m", message])
                .status
                .success()
        );
        String::from_utf8(git(&work, &["rev-parse", "HEAD"]).stdout)
            .unwrap()
            .trim()
            .to_owned()
    };
    let first = commit("first");

    // Without a decision: refused.
    let (pushed, said) = push(&[&format!("{first}:refs/heads/main")]);
    assert!(!pushed, "{said}");
    assert!(said.contains("no decision"), "{said}");

    // A decision asked for exactly this merge, approved, attached as a note: admitted.
    let metadata = write_file(
        dir,
        "merge.json",
        json!({"commit": first, "ref": "refs/heads/main"}).to_string(),
    );
    let decision = dir.join("decision.json");
    let action = format!("merge {first} into refs/heads/main");
    let (child, id) = start_gate(
        &appliance,
        &key,
        &[
            "--action",
            &action,
            "--metadata",
            metadata.to_str().unwrap(),
            "--method",
            "ssh",
            "--wait",
            "--output",
            decision.to_str().unwrap(),
        ],
    );
    decide(&alice, "approve", &id);
    let (status, _, said) = finish(child);
    assert_eq!(status, 0, "{said}");
    let note = ["notes", "--ref=sshsign", "add", "-f", "-F"];
    let mut args = note.to_vec();
    args.extend([decision.to_str().unwrap(), &first]);
    assert!(git(&work, &args).status.success());
    let (pushed, said) = push(&[&format!("{first}:refs/heads/main"), "refs/notes/sshsign"]);
    assert!(pushed, "{said}");
    assert!(said.contains("approved; the decision verifies"), "{said}");

    // The same decision on another commit: refused.
    let second = commit("second");
    let mut args = note.to_vec();
    args.extend([decision.to_str().unwrap(), &second]);
    assert!(git(&work, &args).status.success());
    let (pushed, said) = push(&[&format!("{second}:refs/heads/main"), "refs/notes/sshsign"]);
    assert!(!pushed, "{said}");
    assert!(said.contains("does not pass"), "{said}");
    assert!(said.contains("another action"), "{said}");
}
