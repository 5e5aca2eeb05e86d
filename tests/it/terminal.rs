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

/// A tmux server of the test's own, with panes of `cols` by `rows` kept after they exit.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn new(dir: &std::path::Path) -> Self {
        Tmux {
            socket: dir.join("tmux.sock"),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let output = clean_command("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts `command` in a detached session `name` of `cols` by `rows`.
    fn start(&self, name: &str, cols: u16, rows: u16, command: &str) {
        let (cols, rows) = (cols.to_string(), rows.to_string());
        self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &cols,
            "-y",
            &rows,
            command,
        ]);
        self.run(&["set-option", "-t", name, "remain-on-exit", "on"]);
    }

    fn screen(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", name])
    }

    /// Waits (up to 10 s) until the pane shows `text`; returns the screen.
    fn wait_for(&self, name: &str, text: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let screen = self.screen(name);
            if screen.contains(text) || std::time::Instant::now() > deadline {
                assert!(screen.contains(text), "waited for {text:?}:\n{screen}");
                return screen;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn keys(&self, name: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", name];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn dead(&self, name: &str) -> bool {
        self.run(&["display-message", "-p", "-t", name, "#{pane_dead}"])
            .trim()
            == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = clean_command("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// Scrolls a text view (space, a page at a time) until it shows `text`; returns the screen.
fn scroll_to(tmux: &Tmux, name: &str, text: &str) -> String {
    for _ in 0..12 {
        let screen = tmux.screen(name);
        if screen.contains(text) {
            return screen;
        }
        tmux.keys(name, &["Space"]);
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    tmux.wait_for(name, text)
}

/// Waits (up to 10 s) until the pane's command has ended.
fn wait_dead(tmux: &Tmux, name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !tmux.dead(name) {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            tmux.screen(name)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The stock `ssh` command line for `user`, with a terminal, as a shell would run it.
fn ssh_line(user: &User, command: &str) -> String {
    let args: Vec<String> = user
        .ssh_command()
        .get_args()
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    format!("ssh -tt {} '{command}'", args.join(" "))
}

#[test]
fn long_lists_page_in_an_80_by_24_terminal() {
    let appliance = crate::common::Appliance::start();
    let alice = appliance.user("alice");
    let key = alice.create_key("--scope git");
    for n in 0..60 {
        alice
            .run(
                &format!("sign --key-id {key}"),
                format!("commit {n}").as_bytes(),
            )
            .ok();
    }
    let tmux = Tmux::new(appliance.dir.path());
    tmux.start("pager", 80, 24, &ssh_line(&alice, "audit-entries"));
    // The first screen: the table's head, the first entries, and the prompt on the last row.
    let first = tmux.wait_for("pager", "-- more (");
    let rows: Vec<&str> = first.lines().collect();
    assert!(rows[0].starts_with("entries (61)"), "{first}");
    assert!(first.contains("create_key"), "{first}");
    assert!(
        !first.contains("  60  "),
        "the last entry is not on the first page:\n{first}"
    );
    assert!(rows.len() <= 24, "{first}");
    // A line, then a page: the end, and the command ends with its status.
    tmux.keys("pager", &["Enter"]);
    tmux.wait_for("pager", "  21  ");
    tmux.keys("pager", &["Space"]);
    tmux.wait_for("pager", "  44  ");
    tmux.keys("pager", &["Space"]);
    let last = tmux.wait_for("pager", "  60  ");
    wait_dead(&tmux, "pager");
    assert!(!tmux.screen("pager").contains("-- more"), "{last}");
    // q stops it where it is.
    tmux.start("quit", 80, 24, &ssh_line(&alice, "audit-entries"));
    tmux.wait_for("quit", "-- more (");
    tmux.keys("quit", &["q"]);
    wait_dead(&tmux, "quit");
    let stopped = tmux.screen("quit");
    assert!(
        !stopped.contains("  60  ") && !stopped.contains("-- more"),
        "{stopped}"
    );
    // The terminal resized while paging: the next page fills the new height (at 24 rows one
    // page would not reach the end).
    tmux.start("resize", 80, 24, &ssh_line(&alice, "audit-entries"));
    tmux.wait_for("resize", "-- more (");
    tmux.run(&["resize-window", "-t", "resize", "-x", "100", "-y", "45"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    tmux.keys("resize", &["Space"]);
    tmux.wait_for("resize", "  60  ");
    // A short reply is shown whole, with no prompt.
    tmux.start("short", 80, 24, &ssh_line(&alice, "whoami"));
    let screen = tmux.wait_for("short", "registered at");
    assert!(!screen.contains("-- more"), "{screen}");
}

#[test]
fn the_terminal_ui_makes_a_key_from_a_template_and_approves_a_request() {
    let appliance = crate::common::Appliance::start();
    let alice = appliance.user("alice");
    let agent = appliance.user("agent");
    let agent_id = crate::approvals::user_id(&agent);
    agent.accept(&alice);
    let tmux = Tmux::new(appliance.dir.path());
    // No command and a terminal: the UI, in 80 by 24.
    tmux.start("ui", 80, 24, &ssh_line(&alice, "").replace(" ''", ""));
    let welcome = tmux.wait_for("ui", "You are usr_");
    assert!(
        welcome.contains("1 Welcome") && welcome.contains("7 Account"),
        "all seven screens in 80 columns:\n{welcome}"
    );
    assert!(
        welcome.contains("make a signing key"),
        "a new user's hint:\n{welcome}"
    );

    // Keys: a new key from the git template, with a branch rule typed in.
    tmux.keys("ui", &["2"]);
    tmux.wait_for("ui", "No keys yet");
    tmux.keys("ui", &["n"]);
    tmux.wait_for("ui", "choose a template");
    tmux.keys("ui", &["1"]);
    tmux.wait_for("ui", "Repositories");
    tmux.keys("ui", &["-l", "github.com/acme/*"]);
    tmux.keys("ui", &["Enter"]);
    // A mistake is told as it is typed, in create-key's words: here none.
    tmux.keys("ui", &["-l", "main"]);
    tmux.wait_for("ui", "ok: Enter on the last field goes ahead");
    tmux.keys("ui", &["Enter"]);
    let created = tmux.wait_for("ui", "git config user.signingkey ak_");
    let key = created
        .split("user.signingkey ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(
        created.contains("namespaces=\"git\" ssh-ed25519"),
        "{created}"
    );
    // The key is real: listed over SSH with the rule typed in.
    let keys = alice.cmd("keys");
    let listed = &keys.ok()["keys"][0];
    assert_eq!(listed["key_id"], key.as_str());
    assert_eq!(
        listed["authorizations"][0]["hard_rules"]["branch"][0],
        "main"
    );
    tmux.keys("ui", &["Escape"]);
    // The list, not the result screen before it (which shows the key id too).
    let list = tmux.wait_for("ui", "autonomous");
    assert!(list.contains(&key) && list.contains("active"), "{list}");

    // Pending: an agent's co-signed request on another key, approved from the UI.
    let cosigned = alice.create_key("--scope deploy");
    alice
        .cmd(&format!(
            "authorize --key-id {cosigned} --scope deploy --tier cosign --grantee {agent_id}"
        ))
        .ok();
    tmux.keys("ui", &["4"]);
    tmux.wait_for("ui", "Nothing waits for you");
    let asked = agent.run(&format!("sign --type deploy --key-id {cosigned}"), b"v9");
    let id = asked.ok()["pending_id"].as_str().unwrap().to_owned();
    // It shows up without a key press.
    tmux.wait_for("ui", &id);
    // Its details: the terms, the digest, and its page with a QR code.
    tmux.keys("ui", &["Enter"]);
    let details = tmux.wait_for("ui", "payload sha512");
    assert!(details.contains("deploy"), "{details}");
    let range = scroll_to(&tmux, "ui", "Authorized range");
    assert!(range.contains("cosign"), "{range}");
    scroll_to(&tmux, "ui", "▀");
    tmux.keys("ui", &["Escape"]);
    tmux.keys("ui", &["a"]);
    tmux.wait_for("ui", &format!("{id}: approved"));
    let envelope = agent.cmd(&format!("get-envelope --id {id}"));
    assert_eq!(envelope.ok()["status"], "approved");
    assert!(envelope.json["signature"].is_string());

    // Resized, it draws again to the new size; q ends the session with status 0.
    tmux.run(&["resize-window", "-t", "ui", "-x", "100", "-y", "30"]);
    tmux.keys("ui", &["6"]);
    let audit = tmux.wait_for("ui", "newest first · checkpoint");
    assert!(
        audit
            .lines()
            .any(|l| l.chars().count() == 100 && l.starts_with('┌')),
        "{audit}"
    );
    assert!(audit.contains("approve"), "{audit}");
    tmux.keys("ui", &["q"]);
    wait_dead(&tmux, "ui");

    // A client that vanishes mid-screen leaves the appliance serving everyone.
    tmux.start("gone", 80, 24, &ssh_line(&alice, "").replace(" ''", ""));
    tmux.wait_for("gone", "You are usr_");
    tmux.keys("gone", &["2", "n", "1"]);
    tmux.wait_for("gone", "Repositories");
    tmux.run(&["kill-session", "-t", "gone"]);
    assert!(alice.cmd("whoami").ok()["user_id"].is_string());
    assert_eq!(alice.cmd("keys").ok()["keys"].as_array().unwrap().len(), 2);
}

#[test]
fn the_terminal_ui_grants_keys_logs_offers_and_enrolls_totp() {
    let appliance = crate::common::Appliance::start();
    let alice = appliance.user("alice");
    let bob = appliance.user("bob");
    let bob_id = crate::approvals::user_id(&bob);
    bob.accept(&alice);
    let key = alice.create_key("--scope deploy");
    let tmux = Tmux::new(appliance.dir.path());
    tmux.start("ui", 80, 24, &ssh_line(&alice, "").replace(" ''", ""));
    tmux.wait_for("ui", "You are usr_");

    // Grants: the key's authorizations; grant it to bob, then revoke that grant.
    tmux.keys("ui", &["2"]);
    tmux.wait_for("ui", &key);
    tmux.keys("ui", &["Enter"]);
    tmux.wait_for("ui", &format!("Authorizations of {key}"));
    tmux.keys("ui", &["n"]);
    tmux.wait_for("ui", "Grantee");
    tmux.keys("ui", &["-l", &bob_id]);
    tmux.keys("ui", &["Enter", "C-u"]);
    tmux.keys("ui", &["-l", "deploy"]);
    tmux.keys("ui", &["Enter", "C-u"]);
    tmux.keys("ui", &["-l", "sometimes"]);
    // A bad value is told in the grammar's words before anything is asked.
    tmux.wait_for("ui", "sometimes");
    tmux.wait_for("ui", "! ");
    tmux.keys("ui", &["C-u"]);
    tmux.keys("ui", &["-l", "cosign"]);
    tmux.wait_for("ui", "ok: Enter");
    tmux.keys("ui", &["Enter", "Enter"]);
    tmux.wait_for("ui", "authorization id");
    let grants = alice.cmd(&format!("authorizations --key-id {key}"));
    let list = grants.ok()["authorizations"].as_array().unwrap().clone();
    assert!(
        list.iter()
            .any(|a| a["grantee"] == bob_id.as_str() && a["tier"] == "cosign"),
        "{list:?}"
    );
    tmux.keys("ui", &["Escape"]);
    // The id columns stay whole, whatever else gives way in 80 columns.
    tmux.wait_for("ui", &bob_id);

    // Offers: open a negotiation, then read its history.
    tmux.keys("ui", &["5", "o"]);
    tmux.wait_for("ui", "Log an offer");
    tmux.keys("ui", &["Enter", "Enter", "Enter", "Enter", "C-u"]);
    tmux.keys("ui", &["-l", r#"{"valuation_cap": 9000000}"#]);
    tmux.keys("ui", &["Enter"]);
    let logged = tmux.wait_for("ui", "negotiation id");
    let negotiation = logged
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|word| word.starts_with("neg_") && word.len() > 20)
        .unwrap_or_else(|| panic!("{logged}"))
        .to_owned();
    let history = alice.cmd(&format!("history --negotiation-id {negotiation}"));
    assert_eq!(
        history.ok()["offers"][0]["metadata"]["valuation_cap"],
        9000000
    );

    // Account: enroll TOTP; the secret's QR code is on screen.
    tmux.keys("ui", &["Escape", "7", "t", "Enter"]);
    let enrolled = tmux.wait_for("ui", "Scan this with your authenticator app");
    assert!(
        enrolled.contains("▀") || enrolled.contains("█"),
        "{enrolled}"
    );
    // The rest (the otpauth URI) is a scroll away.
    scroll_to(&tmux, "ui", "otpauth://totp/");

    // Take an API key back from the Account screen, by its id.
    let made = alice.cmd("api-key create --label ci");
    let api_key = made.ok()["id"].as_str().unwrap().to_owned();
    tmux.keys("ui", &["Escape", "g", "x"]);
    tmux.wait_for("ui", "Revoke or remove");
    tmux.keys("ui", &["-l", &api_key]);
    tmux.keys("ui", &["Enter"]);
    tmux.wait_for("ui", "revoked at");
    let keys = alice.cmd("api-keys");
    let listed = keys.ok()["api_keys"].as_array().unwrap().clone();
    assert!(
        listed
            .iter()
            .any(|k| k["id"] == api_key.as_str() && k["revoked_at"].is_string()),
        "{listed:?}"
    );
    let authenticators = alice.cmd("authenticators");
    assert_eq!(
        authenticators.ok()["authenticators"][0]["type"],
        "totp",
        "{:?}",
        authenticators.json
    );
    tmux.keys("ui", &["q"]);
    tmux.keys("ui", &["q"]);
    wait_dead(&tmux, "ui");
}
