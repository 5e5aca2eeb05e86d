//! Replies for people: a client that asks for a PTY (or says `--format text`) gets aligned text
//! and tables, coloured on a terminal, lines ending in CR LF for its raw terminal; without one
//! the reply stays JSON; `help` is plain text on a terminal.

use crate::common::{Reply, User, clean_command, run_with_stdin};

/// `ssh -tt` (a PTY even though stdin is not a terminal), as a person at `TERM=xterm-256color`.
fn on_terminal(user: &User, command: &str) -> (i32, String) {
    let options: Vec<std::ffi::OsString> = user
        .ssh_command()
        .get_args()
        .map(std::ffi::OsStr::to_owned)
        .collect();
    let mut ssh = clean_command("ssh");
    ssh.env("TERM", "xterm-256color")
        .arg("-tt")
        .args(options)
        .arg(command);
    let output = run_with_stdin(&mut ssh, b"");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn a_terminal_gets_tables_and_a_script_gets_json() {
    let appliance = crate::common::Appliance::start();
    let alice = appliance.user("alice");
    let key = alice.create_key("--scope git-commit --tier autonomous");

    let (status, text) = on_terminal(&alice, "keys");
    assert_eq!(status, 0, "{text}");
    assert!(
        text.contains("\r\n"),
        "a raw terminal needs CR LF: {text:?}"
    );
    assert!(!text.contains("{\""), "not JSON: {text}");
    assert!(
        text.contains("\x1b[1m"),
        "headings are bold on a terminal: {text:?}"
    );
    let plain = strip_ansi(&text);
    let lines: Vec<&str> = plain.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("keys (1)")), "{plain}");
    let row = lines
        .iter()
        .find(|l| l.contains(&key))
        .expect("the key's row");
    assert!(row.contains("owner") && row.contains("active"), "{row}");
    assert!(row.contains("git (git-commit)"), "{row}");
    assert!(plain.lines().all(|l| l.chars().count() <= 80), "{plain}");

    // Errors read as words, with the exit status as before.
    let (status, text) = on_terminal(&alice, "revoke --key-id ak_nosuchkeyatall000000000000");
    assert_eq!(status, 1);
    assert!(
        strip_ansi(&text).starts_with("error: unknown key id"),
        "{text}"
    );

    // Help is the grammar as plain text, not a JSON string full of \n.
    let (status, text) = on_terminal(&alice, "help");
    assert_eq!(status, 0);
    assert!(
        text.contains("Usage:") && text.contains("create-key"),
        "{text}"
    );
    assert!(
        !text.contains("\\n") && !text.contains("\"help\""),
        "{text}"
    );
    let (_, text) = on_terminal(&alice, "sign --help");
    assert!(
        text.contains("--key-id") && !text.contains("\"help\""),
        "{text}"
    );

    // --format json on a terminal is JSON still (CR LF is whitespace to a JSON reader).
    let (status, text) = on_terminal(&alice, "keys --format json");
    assert_eq!(status, 0);
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(json["keys"][0]["key_id"], key.as_str());

    // --format text without a terminal: text, no colour, plain newlines.
    let reply: Reply = alice.cmd("whoami --format text");
    assert_eq!(reply.status, 0);
    assert!(reply.stdout.starts_with("user id "), "{}", reply.stdout);
    assert!(!reply.stdout.contains('\x1b') && !reply.stdout.contains('\r'));
    // And without either, one JSON document, as scripts and the shim expect.
    assert!(alice.cmd("whoami").ok()["user_id"].is_string());
    // A command line that does not parse is answered in the format it asked for.
    let reply = alice.cmd("frobnicate --format text");
    assert_eq!(reply.status, 2);
    assert!(reply.stdout.starts_with("error: "), "{}", reply.stdout);
}

/// `text` without its colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}
