//! The terminal UI: `ssh -t <appliance>` with no command. A person sees who they are, lists and
//! makes keys (with templates: git commits, a SAFE, an NDA, or terms of their own), decides what
//! waits for them, and reads their audit entries, all from the keyboard, in an 80 by 24
//! terminal or larger.
//!
//! Everything it does goes through the same commands as `ssh <appliance> COMMAND` (the words
//! are built, parsed by the grammar and run by [`commands::execute`]), so the rules, the audit
//! entries and the messages are the command line's. It runs in the channel's own task: a slow
//! token call holds up only this screen, and a client that goes away ends it.

mod backend;
mod input;

use std::sync::Arc;

use ratatui::Terminal as Screen;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState, Tabs, Wrap};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use self::backend::AnsiBackend;
use self::input::Key;
use super::commands::{self, Context};
use super::grammar;
use super::interactive::Input;
use super::reply::Reply;
use super::text::Terminal;
use crate::appliance::{Appliance, Caller};

/// The screens, in the order of their number keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tab {
    Welcome,
    Keys,
    Authorizations,
    Pending,
    Negotiations,
    Audit,
    Account,
}

const TABS: [(Tab, &str); 7] = [
    (Tab::Welcome, "Welcome"),
    (Tab::Keys, "Keys"),
    (Tab::Authorizations, "Grants"),
    (Tab::Pending, "Pending"),
    (Tab::Negotiations, "Offers"),
    (Tab::Audit, "Audit"),
    (Tab::Account, "Account"),
];

/// What a form makes: a key from a template, or another command.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Form {
    Key(usize),
    /// Another authorization on this key.
    Grant(String),
    Offer,
    History,
    Allow,
    Totp,
    TotpCode,
    ApiKey,
    Webhook,
    /// Take something of the account back: an API key, a webhook, an authenticator, or a
    /// user whose requests you accepted, by its id.
    Remove,
    Notify,
}

impl Form {
    fn title(&self) -> String {
        match self {
            Form::Key(t) => format!("New key: {}", TEMPLATES[*t].name),
            Form::Grant(key) => format!("Grant {key} to someone"),
            Form::Offer => "Log an offer".into(),
            Form::History => "A negotiation's history".into(),
            Form::Allow => "Accept requests and grants from".into(),
            Form::Totp => "Enroll an authenticator app (TOTP)".into(),
            Form::TotpCode => "Confirm the authenticator app".into(),
            Form::ApiKey => "New API key".into(),
            Form::Webhook => "New webhook endpoint".into(),
            Form::Remove => "Revoke or remove".into(),
            Form::Notify => "Where you hear of requests waiting for you".into(),
        }
    }

    fn fields(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Form::Key(t) => TEMPLATES[*t].fields,
            Form::Grant(_) => &[
                ("Grantee (usr_... or SHA256:...)", ""),
                ("Scope", "git"),
                ("Tier (autonomous/cosign)", "autonomous"),
                ("Constraints (JSON)", "{}"),
            ],
            Form::Offer => &[
                ("Negotiation (neg_...; empty: a new one)", ""),
                ("Round", "0"),
                ("From (your party's name)", "founder"),
                ("Type (offer/counter/accept/reject)", "offer"),
                ("Terms (JSON)", "{}"),
            ],
            Form::History => &[("Negotiation (neg_...)", "")],
            Form::Allow => &[("User (usr_... or SHA256:...)", "")],
            Form::Totp => &[("Label", "phone")],
            Form::TotpCode => &[("Code from the app", "")],
            Form::ApiKey => &[("Label", "")],
            Form::Webhook => &[("URL (https://...)", "")],
            Form::Remove => &[(
                "Id (apk_ API key, whk_ webhook, aut_ authenticator, usr_ or SHA256: a user you accept)",
                "",
            )],
            Form::Notify => &[("URL (https://...; empty: stop)", "")],
        }
    }

    /// The command line the filled form runs.
    fn words(&self, values: &[String]) -> Vec<String> {
        let v = |i: usize| values.get(i).map_or("", |s| s.trim()).to_owned();
        let w = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let mut words = match self {
            Form::Key(t) => return create_words(*t, values),
            Form::Grant(key) => w(&[
                "authorize",
                "--key-id",
                key,
                "--grantee",
                &v(0),
                "--scope",
                &v(1),
                "--tier",
                &v(2),
            ]),
            Form::Offer => {
                let mut words = w(&[
                    "log-offer",
                    "--round",
                    &v(1),
                    "--from",
                    &v(2),
                    "--type",
                    &v(3),
                ]);
                if !v(0).is_empty() {
                    words.extend(w(&["--negotiation-id", &v(0)]));
                }
                if !v(4).is_empty() && v(4) != "{}" {
                    words.extend(w(&["--metadata", &v(4)]));
                }
                words
            }
            Form::History => w(&["history", "--negotiation-id", &v(0)]),
            Form::Allow => w(&["approvers", "allow", "--from", &v(0)]),
            Form::Totp => w(&["enroll", "totp", "--label", &v(0)]),
            Form::TotpCode => w(&["enroll", "totp", "--code", &v(0)]),
            Form::ApiKey => w(&["api-key", "create", "--label", &v(0)]),
            Form::Webhook => w(&["webhook", "add", "--url", &v(0)]),
            Form::Remove => {
                let id = v(0);
                match id.split('_').next().unwrap_or("") {
                    "apk" => w(&["api-key", "revoke", "--id", &id]),
                    "whk" => w(&["webhook", "remove", "--id", &id]),
                    "aut" => w(&["authenticator", "remove", "--id", &id]),
                    _ => w(&["approvers", "revoke", "--from", &id]),
                }
            }
            Form::Notify if v(0).is_empty() => w(&["notify", "clear"]),
            Form::Notify => w(&["notify", "set", "--url", &v(0)]),
        };
        if let Form::Grant(_) = self
            && !v(3).is_empty()
            && v(3) != "{}"
        {
            words.extend(w(&["--constraints", &v(3)]));
        }
        words
    }
}

/// A template for a new key's first authorization.
struct Template {
    name: &'static str,
    about: &'static str,
    fields: &'static [(&'static str, &'static str)],
}

const TEMPLATES: [Template; 4] = [
    Template {
        name: "Git commits",
        about: "sign commits and tags (namespace git), optionally only some repositories and branches",
        fields: &[
            ("Repositories (globs, comma-separated; empty: any)", ""),
            ("Branches (globs, comma-separated; empty: any)", ""),
        ],
    },
    Template {
        name: "SAFE agreement",
        about: "co-signed: a person approves each SAFE inside the ranges",
        fields: &[
            ("Valuation cap at least ($)", "100000"),
            ("Valuation cap at most ($)", "50000000"),
            ("Discount rate at least", "0"),
            ("Pro-rata rights required (yes/no)", "yes"),
        ],
    },
    Template {
        name: "NDA",
        about: "non-disclosure agreements of the types and terms you allow",
        fields: &[
            ("NDA types (comma-separated)", "mutual, one-way"),
            ("Term at least (years)", "1"),
            ("Term at most (years)", "10"),
        ],
    },
    Template {
        name: "Custom",
        about: "a scope and up to three typed constraints of your own",
        fields: &[
            ("Scope (namespace)", "file"),
            ("Tier (autonomous/cosign)", "autonomous"),
            ("Constraint 1: metadata field (empty: none)", ""),
            ("  type (range/minimum/maximum/enum/required)", ""),
            ("  value (range MIN,MAX; enum a, b; required yes/no)", ""),
            ("Constraint 2: metadata field (empty: none)", ""),
            ("  type", ""),
            ("  value", ""),
            ("Constraint 3: metadata field (empty: none)", ""),
            ("  type", ""),
            ("  value", ""),
        ],
    },
];

/// What the screen is doing besides showing a tab.
enum Mode {
    Browse,
    Help,
    /// Choosing a template.
    Templates {
        selected: usize,
    },
    /// Filling a form's fields.
    Form {
        form: Form,
        values: Vec<String>,
        focus: usize,
    },
    /// A question before an action: the text, and the command that answers yes.
    Confirm {
        text: Vec<String>,
        words: Vec<String>,
    },
    /// What came of an action, to read (↑↓ scroll) before going on.
    Result {
        title: String,
        lines: Vec<String>,
    },
}

struct App {
    appliance: Arc<Appliance>,
    caller: Caller,
    tab: Tab,
    mode: Mode,
    table: TableState,
    whoami: Value,
    keys: Vec<Value>,
    pending: Vec<Value>,
    audit: Vec<Value>,
    /// Where the Audit screen's next older page starts (`None`: at the log's start).
    audit_next: Option<u64>,
    /// The key whose authorizations the Grants screen shows, and them.
    key: Option<String>,
    grants: Vec<Value>,
    /// The Account screen: the listings, as text.
    account: Vec<String>,
    /// The last negotiation looked at, as text.
    negotiation: Vec<String>,
    /// The audit log's latest signed checkpoint: its size and root.
    checkpoint: Option<(u64, String)>,
    /// How far a text view is scrolled.
    scroll: u16,
    width: usize,
    /// The last message, and whether it is an error.
    status: Option<(bool, String)>,
    quit: bool,
}

/// Runs the UI for `caller` until they quit or their client goes.
pub async fn run(
    appliance: Arc<Appliance>,
    caller: Caller,
    terminal: Terminal,
    inputs: &mut mpsc::Receiver<Input>,
    out: &super::interactive::Screen,
) {
    let size = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
    let backend = AnsiBackend::new(size(terminal.cols), size(terminal.rows));
    let Ok(mut screen) = Screen::new(backend) else {
        return;
    };
    let mut app = App {
        appliance,
        caller,
        tab: Tab::Welcome,
        mode: Mode::Browse,
        table: TableState::default().with_selected(Some(0)),
        whoami: Value::Null,
        keys: Vec::new(),
        pending: Vec::new(),
        audit: Vec::new(),
        audit_next: None,
        key: None,
        grants: Vec::new(),
        account: Vec::new(),
        negotiation: Vec::new(),
        checkpoint: None,
        scroll: 0,
        width: terminal.cols,
        status: None,
        quit: false,
    };
    app.refresh().await;
    // The alternate screen, without a cursor; both given back at the end.
    if !send(out, "\x1b[?1049h\x1b[?25l\x1b[2J").await {
        return;
    }
    let mut live = tokio::time::interval(LIVE_EVERY);
    live.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_key = tokio::time::Instant::now();
    let mut farewell = "";
    loop {
        if screen.draw(|frame| app.draw(frame)).is_err() {
            break;
        }
        if !send(out, &screen.backend_mut().take()).await {
            return;
        }
        let input = tokio::select! {
            input = inputs.recv() => input,
            _ = live.tick() => {
                let idle = last_key.elapsed();
                if idle >= IDLE_LIMIT {
                    farewell = "sshsign: closed after 15 minutes without a key press; \
                                connect again to go on.\r\n";
                    break;
                }
                app.live(IDLE_LIMIT - idle).await;
                continue;
            }
        };
        match input {
            None => return,
            Some(Input::Eof) => break,
            Some(Input::Resize { cols, rows }) => {
                let resized = Terminal::from_pty("", cols, rows);
                app.width = resized.cols;
                screen
                    .backend_mut()
                    .resize(size(resized.cols), size(resized.rows));
                let _ = screen.clear();
            }
            Some(Input::Data(bytes)) => {
                last_key = tokio::time::Instant::now();
                for key in input::keys(&bytes) {
                    app.on_key(key).await;
                }
            }
        }
        if app.quit {
            break;
        }
    }
    send(
        out,
        &format!("\x1b[0m\x1b[2J\x1b[?25h\x1b[?1049l{farewell}"),
    )
    .await;
}

/// How often the screen reads what waits for the person again, so that a new request shows
/// without a key press (and the connection does not look idle).
const LIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// How long the screen stays open without a key press: a session that can approve is not left
/// open on an unattended terminal. The last minute is announced in the status line.
const IDLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// How many of the caller's entries the Audit screen reads at a time.
const AUDIT_PAGE: usize = 200;

async fn send(out: &super::interactive::Screen, text: &str) -> bool {
    out.handle
        .data(out.channel, text.as_bytes().to_vec())
        .await
        .is_ok()
}

/// What the Pending screen lists from a `pending` reply: what the person decides, then the
/// approvals they asked for.
fn pending_items(reply: &Value) -> Vec<Value> {
    ["to_decide", "approvals"]
        .iter()
        .flat_map(|list| reply[*list].as_array().into_iter().flatten().cloned())
        .collect()
}

/// Comma-separated words, trimmed, without empties.
fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A number as typed, as JSON (a number, or the text itself so that the grammar says why not).
fn number(text: &str) -> Value {
    serde_json::from_str::<serde_json::Number>(text.trim())
        .map(Value::Number)
        .unwrap_or_else(|_| Value::String(text.trim().to_owned()))
}

/// The `create-key` words a template's fields make.
fn create_words(template: usize, values: &[String]) -> Vec<String> {
    let v = |i: usize| values.get(i).map(String::as_str).unwrap_or("");
    let mut words = vec!["create-key".to_owned()];
    let mut flag = |name: &str, value: String| {
        words.push(format!("--{name}"));
        words.push(value);
    };
    match template {
        0 => {
            flag("scope", "git".into());
            let mut rules = Map::new();
            if !list(v(0)).is_empty() {
                rules.insert("repository".into(), json!(list(v(0))));
            }
            if !list(v(1)).is_empty() {
                rules.insert("branch".into(), json!(list(v(1))));
            }
            if !rules.is_empty() {
                flag("hard-rules", Value::Object(rules).to_string());
            }
        }
        1 => {
            flag("scope", "safe-agreement".into());
            flag("tier", "cosign".into());
            let required = matches!(v(3).trim(), "yes" | "y" | "true");
            let constraints = json!({
                "valuation_cap": {"min": number(v(0)), "max": number(v(1))},
                "discount_rate": {"min": number(v(2))},
                "pro_rata": {"required": required},
            });
            flag("constraints", constraints.to_string());
        }
        2 => {
            flag("scope", "nda".into());
            let constraints = json!({
                "nda_type": {"allowed": list(v(0))},
                "term_years": {"min": number(v(1)), "max": number(v(2))},
            });
            flag("constraints", constraints.to_string());
        }
        _ => {
            flag("scope", v(0).trim().to_owned());
            flag("tier", v(1).trim().to_owned());
            let mut constraints = Map::new();
            for row in 0..3 {
                let (field, kind, value) = (v(2 + 3 * row), v(3 + 3 * row), v(4 + 3 * row));
                if !field.trim().is_empty() {
                    constraints.insert(field.trim().to_owned(), typed(kind, value));
                }
            }
            if !constraints.is_empty() {
                flag("constraints", Value::Object(constraints).to_string());
            }
        }
    }
    words
}

/// One typed constraint as `--constraints` writes it. A type the grammar does not know is
/// passed on as written, so that `create-key` says what is wrong with it.
fn typed(kind: &str, value: &str) -> Value {
    match kind.trim() {
        "range" => {
            let mut bounds = value.splitn(2, ',');
            let (min, max) = (bounds.next().unwrap_or(""), bounds.next().unwrap_or(""));
            json!({"min": number(min), "max": number(max)})
        }
        "minimum" | "min" => json!({"min": number(value)}),
        "maximum" | "max" => json!({"max": number(value)}),
        "enum" => json!({"allowed": list(value)}),
        "required" => json!({"required": matches!(value.trim(), "yes" | "y" | "true")}),
        other => json!({ other: value.trim() }),
    }
}

/// What the grammar and the grant rules say of `words` before anything is made: None when
/// they would be accepted.
fn check(words: &[String]) -> Option<String> {
    match grammar::parse(words.to_vec()) {
        Err(error) => Some(message(&Reply::from_clap(&error))),
        Ok((grammar::Command::CreateKey(args), _)) => {
            match args.grant.into_grant(crate::time::now()) {
                Err(error) => Some(message(&Reply::from_error(&error))),
                Ok(grant) => grant.terms.checked().err().map(|refusal| {
                    format!("--{} {}", refusal.field.replace('_', "-"), refusal.reason)
                }),
            }
        }
        Ok(_) => None,
    }
}

fn message(reply: &Reply) -> String {
    reply.body["error"]["message"]
        .as_str()
        .unwrap_or("failed")
        .to_owned()
}

impl App {
    /// Runs a command line as the command line would, as this person: the reply, and what it
    /// had to say to the person (links, QR codes).
    async fn run(&self, words: Vec<String>) -> Result<(Value, String), String> {
        let (command, _) = grammar::parse(words).map_err(|e| message(&Reply::from_clap(&e)))?;
        let ctx = Context::new(Arc::clone(&self.appliance), self.caller.clone(), Vec::new());
        let reply = commands::execute(command, &ctx)
            .await
            .map_err(|e| message(&Reply::from_error(&e)))?;
        let notice = std::mem::take(&mut *ctx.stderr.lock().unwrap_or_else(|e| e.into_inner()));
        Ok((reply, notice))
    }

    async fn words(&self, line: &str) -> Result<Value, String> {
        let words = line.split(' ').map(str::to_owned).collect();
        self.run(words).await.map(|(reply, _)| reply)
    }

    /// A reply as the text a terminal gets, in lines.
    fn text(&self, reply: &Value) -> Vec<String> {
        let terminal = Terminal {
            cols: self.width.saturating_sub(2).max(20),
            rows: 24,
            colour: false,
        };
        super::text::render(reply, &terminal)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Reads what the screens show again.
    async fn refresh(&mut self) {
        if let Ok(who) = self.words("whoami").await {
            self.whoami = who;
        }
        if let Ok(keys) = self.words("keys").await {
            self.keys = keys["keys"].as_array().cloned().unwrap_or_default();
        }
        let owned = |k: &&Value| k["role"] == "owner" && k["status"] == "active";
        if self.key.is_none() {
            self.key = self
                .keys
                .iter()
                .find(owned)
                .and_then(|k| k["key_id"].as_str())
                .map(str::to_owned);
        }
        self.grants = match &self.key {
            Some(key) => match self.words(&format!("authorizations --key-id {key}")).await {
                Ok(list) => list["authorizations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                Err(_) => Vec::new(),
            },
            None => Vec::new(),
        };
        self.read_live(true).await;
        // The caller's newest entries; older ones are read as the person scrolls down to them.
        self.audit.clear();
        self.audit_next = Some(u64::MAX);
        self.older_audit().await;
        let mut account = Vec::new();
        for (title, line) in [
            ("Whom you accept requests and grants from", "approvers list"),
            ("Your authenticators", "authenticators"),
            ("Your API keys", "api-keys"),
            ("Your webhooks", "webhooks"),
            ("Where you hear of requests", "notify show"),
        ] {
            account.push(format!("── {title}"));
            match self.words(line).await {
                Ok(reply) => account.extend(self.text(&reply)),
                Err(error) => account.push(error),
            }
            account.push(String::new());
        }
        self.account = account;
    }

    /// The next page of the caller's entries, older than those shown; `false` when the log's
    /// first entry is shown.
    async fn older_audit(&mut self) -> bool {
        let shown = self.audit.len();
        // A page may hold none of theirs in a stretch of others' entries: read on, a while.
        for _ in 0..20 {
            let Some(before) = self.audit_next else {
                break;
            };
            let line = format!("audit-entries --before {before} --limit {AUDIT_PAGE}");
            let Ok(page) = self.words(&line).await else {
                break;
            };
            self.audit
                .extend(page["entries"].as_array().into_iter().flatten().cloned());
            self.audit_next = page["next"].as_u64();
            if self.audit.len() > shown {
                break;
            }
        }
        self.audit.len() > shown
    }

    /// Reads again what waits for the person and, with `checkpoint`, the log's checkpoint
    /// (which signs one if the log grew: not every few seconds, so that open screens never add
    /// to the token's work).
    async fn read_live(&mut self, checkpoint: bool) {
        if let Ok(pending) = self.words("pending").await {
            self.pending = pending_items(&pending);
        }
        if !checkpoint {
            return;
        }
        if let Ok(checkpoint) = self.words("audit-checkpoint").await {
            self.checkpoint = checkpoint["size"]
                .as_u64()
                .map(|size| (size, checkpoint["root"].as_str().unwrap_or("").to_owned()));
        }
    }

    /// Every few seconds: [`App::read_live`], and the status line's count-down when the screen
    /// is about to close; `left` is how long it stays open without a key press.
    async fn live(&mut self, left: std::time::Duration) {
        self.read_live(false).await;
        let rows = self.rows();
        if rows > 0 && self.selected() >= rows {
            self.table.select(Some(rows - 1));
        }
        if left <= std::time::Duration::from_secs(60) {
            self.say(Err(format!(
                "no key pressed for a while: this screen closes in {} s; press any key to stay",
                left.as_secs()
            )));
        } else if self
            .status
            .as_ref()
            .is_some_and(|(_, text)| text.starts_with("no key pressed"))
        {
            self.status = None;
        }
    }

    fn rows(&self) -> usize {
        match self.tab {
            Tab::Keys => self.keys.len(),
            Tab::Authorizations => self.grants.len(),
            Tab::Pending => self.pending.len(),
            Tab::Audit => self.audit.len(),
            _ => 0,
        }
    }

    fn selected(&self) -> usize {
        self.table.selected().unwrap_or(0)
    }

    fn go(&mut self, tab: Tab) {
        self.tab = tab;
        self.table.select(Some(0));
        self.scroll = 0;
        self.status = None;
    }

    fn say(&mut self, outcome: Result<String, String>) {
        self.status = Some(match outcome {
            Ok(text) => (false, text),
            Err(text) => (true, text),
        });
    }

    fn open(&mut self, form: Form) {
        let values = form.fields().iter().map(|(_, d)| (*d).to_owned()).collect();
        self.mode = Mode::Form {
            form,
            values,
            focus: 0,
        };
    }

    /// Runs a filled form; its reply (and what it said to the person) stays on screen.
    async fn submit(&mut self, form: &Form, values: &[String]) -> bool {
        let words = form.words(values);
        if check(&words).is_some() {
            return false;
        }
        match self.run(words).await {
            Ok((reply, notice)) => {
                // What it said to the person (a QR code, a link) first, then the reply.
                let mut lines: Vec<String> = notice.lines().map(str::to_owned).collect();
                if !lines.is_empty() {
                    lines.push(String::new());
                }
                lines.extend(match form {
                    Form::Key(_) => created_lines(&reply),
                    _ => self.text(&reply),
                });
                if *form == Form::History {
                    self.negotiation = lines.clone();
                }
                self.mode = Mode::Result {
                    title: form.title(),
                    lines,
                };
                self.scroll = 0;
                self.refresh().await;
                true
            }
            Err(error) => {
                self.say(Err(error));
                false
            }
        }
    }

    async fn on_key(&mut self, key: Key) {
        if key == Key::Ctrl('c') {
            self.quit = true;
            return;
        }
        match std::mem::replace(&mut self.mode, Mode::Browse) {
            Mode::Browse => self.browse(key).await,
            Mode::Help => {}
            Mode::Result { title, lines } => match key {
                Key::Up => {
                    self.scroll = self.scroll.saturating_sub(1);
                    self.mode = Mode::Result { title, lines };
                }
                Key::Down | Key::Char(' ') => {
                    let step = if key == Key::Down { 1 } else { 10 };
                    let most = u16::try_from(lines.len()).unwrap_or(u16::MAX);
                    self.scroll = (self.scroll + step).min(most);
                    self.mode = Mode::Result { title, lines };
                }
                _ => self.scroll = 0,
            },
            Mode::Templates { selected } => match key {
                Key::Up => {
                    self.mode = Mode::Templates {
                        selected: selected.saturating_sub(1),
                    }
                }
                Key::Down => {
                    self.mode = Mode::Templates {
                        selected: (selected + 1).min(TEMPLATES.len() - 1),
                    }
                }
                Key::Char(c @ '1'..='4') => self.open(Form::Key(c as usize - '1' as usize)),
                Key::Enter => self.open(Form::Key(selected)),
                Key::Esc => {}
                _ => self.mode = Mode::Templates { selected },
            },
            Mode::Form {
                form,
                mut values,
                mut focus,
            } => {
                match key {
                    Key::Esc => return,
                    Key::Up | Key::BackTab => focus = focus.saturating_sub(1),
                    Key::Down | Key::Tab => focus = (focus + 1).min(values.len() - 1),
                    Key::Backspace => {
                        values[focus].pop();
                    }
                    Key::Ctrl('u') => values[focus].clear(),
                    Key::Char(c) => values[focus].push(c),
                    Key::Enter if focus + 1 < values.len() => focus += 1,
                    // A form that went ahead leaves its result on screen; one refused stays.
                    Key::Enter if self.submit(&form, &values).await => return,
                    _ => {}
                }
                self.mode = Mode::Form {
                    form,
                    values,
                    focus,
                };
            }
            Mode::Confirm { text, words } => match key {
                Key::Char('y') | Key::Char('Y') => {
                    let outcome = self.run(words).await;
                    self.say(outcome.map(|(reply, _)| {
                        let status = reply["status"].as_str().unwrap_or("done");
                        format!("done: {status}")
                    }));
                    self.refresh().await;
                }
                Key::Char('n') | Key::Char('N') | Key::Esc => {
                    self.say(Ok("nothing was done".into()));
                }
                _ => self.mode = Mode::Confirm { text, words },
            },
        }
    }

    async fn browse(&mut self, key: Key) {
        let rows = self.rows();
        let selected = self.selected();
        match (self.tab, key) {
            (_, Key::Char('q')) => self.quit = true,
            (_, Key::Char('?')) => self.mode = Mode::Help,
            (_, Key::Char(c @ '1'..='7')) => self.go(TABS[c as usize - '1' as usize].0),
            (_, Key::Tab | Key::Right) => {
                let at = TABS.iter().position(|(t, _)| *t == self.tab).unwrap_or(0);
                self.go(TABS[(at + 1) % TABS.len()].0);
            }
            (_, Key::BackTab | Key::Left) => {
                let at = TABS.iter().position(|(t, _)| *t == self.tab).unwrap_or(0);
                self.go(TABS[(at + TABS.len() - 1) % TABS.len()].0);
            }
            (_, Key::Up) => {
                self.table.select(Some(selected.saturating_sub(1)));
                self.scroll = self.scroll.saturating_sub(1);
            }
            (_, Key::Down) => {
                if self.tab == Tab::Audit
                    && rows > 0
                    && selected + 1 == rows
                    && !self.older_audit().await
                {
                    self.say(Ok("that is your first entry".into()));
                }
                let rows = self.rows();
                if rows > 0 {
                    self.table.select(Some((selected + 1).min(rows - 1)));
                }
                self.scroll = self.scroll.saturating_add(1);
            }
            (_, Key::Char('g')) => {
                self.refresh().await;
                self.say(Ok("up to date".into()));
            }
            (Tab::Keys, Key::Char('n')) => self.mode = Mode::Templates { selected: 0 },
            (Tab::Keys, Key::Enter) => {
                self.key = self
                    .keys
                    .get(selected)
                    .and_then(|k| k["key_id"].as_str())
                    .map(str::to_owned);
                self.refresh().await;
                self.go(Tab::Authorizations);
            }
            (Tab::Keys, Key::Char('r')) => {
                if let Some(id) = self.keys.get(selected).and_then(|k| k["key_id"].as_str()) {
                    self.mode = Mode::Confirm {
                        text: vec![
                            format!("Revoke {id}?"),
                            "It stops signing at once and its private half is destroyed in the \
                             token. This cannot be undone."
                                .into(),
                        ],
                        words: vec!["revoke".into(), "--key-id".into(), id.to_owned()],
                    };
                }
            }
            (Tab::Authorizations, Key::Char('n')) => {
                if let Some(key) = self.key.clone() {
                    self.open(Form::Grant(key));
                }
            }
            (Tab::Authorizations, Key::Char('x')) => {
                if let Some(id) = self
                    .grants
                    .get(selected)
                    .and_then(|a| a["authorization_id"].as_str())
                {
                    self.mode = Mode::Confirm {
                        text: vec![format!(
                            "Revoke authorization {id}? The key and its other authorizations stay."
                        )],
                        words: vec!["revoke-authorization".into(), "--id".into(), id.to_owned()],
                    };
                }
            }
            (Tab::Pending, Key::Char(verb @ ('a' | 'd'))) => self.decide(verb == 'a').await,
            (Tab::Pending, Key::Enter) => {
                if let Some(item) = self.pending.get(selected).cloned() {
                    let mut lines = self.text(&item);
                    // The range its authorization allows, beside the terms asked for.
                    if let (Some(key), Some(authorization)) =
                        (item["key_id"].as_str(), item["authorization_id"].as_str())
                        && let Ok(list) =
                            self.words(&format!("authorizations --key-id {key}")).await
                        && let Some(granted) = list["authorizations"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|a| a["authorization_id"] == authorization)
                    {
                        let range = json!({
                            "constraints": granted["constraints"],
                            "hard_rules": granted["hard_rules"],
                            "scopes": granted["scopes"],
                            "tier": granted["tier"],
                        });
                        lines.push(String::new());
                        lines.push(format!("Authorized range ({authorization}):"));
                        lines.extend(self.text(&range));
                    }
                    if let Some(url) = item["approval_url"].as_str() {
                        lines.push(String::new());
                        lines.push(format!("Its page: {url}"));
                        lines.extend(
                            super::commands::enroll::terminal_qr(url)
                                .lines()
                                .map(str::to_owned),
                        );
                    }
                    self.mode = Mode::Result {
                        title: "Request".into(),
                        lines,
                    };
                    self.scroll = 0;
                }
            }
            (Tab::Negotiations, Key::Char('o')) => self.open(Form::Offer),
            (Tab::Negotiations, Key::Char('h')) => self.open(Form::History),
            (Tab::Account, Key::Char('a')) => self.open(Form::Allow),
            (Tab::Account, Key::Char('t')) => self.open(Form::Totp),
            (Tab::Account, Key::Char('c')) => self.open(Form::TotpCode),
            (Tab::Account, Key::Char('k')) => self.open(Form::ApiKey),
            (Tab::Account, Key::Char('w')) => self.open(Form::Webhook),
            (Tab::Account, Key::Char('x')) => self.open(Form::Remove),
            (Tab::Account, Key::Char('n')) => self.open(Form::Notify),
            (Tab::Account, Key::Char('p')) => {
                let outcome = self.run(vec!["enroll".into(), "passkey".into()]).await;
                match outcome {
                    Ok((reply, notice)) => {
                        let mut lines = self.text(&reply);
                        lines.extend(notice.lines().map(str::to_owned));
                        self.mode = Mode::Result {
                            title: "Register a passkey: open the link on this machine".into(),
                            lines,
                        };
                    }
                    Err(error) => self.say(Err(error)),
                }
            }
            _ => {}
        }
    }

    /// Approve or deny the selected request; a legal agreement's disclosure comes first, as
    /// `approve` without `--confirm` gives it.
    async fn decide(&mut self, approve: bool) {
        let Some(item) = self.pending.get(self.selected()).cloned() else {
            return;
        };
        let id = item["pending_id"]
            .as_str()
            .or(item["id"].as_str())
            .unwrap_or_default()
            .to_owned();
        let verb = if approve { "approve" } else { "deny" };
        let words = vec![verb.to_owned(), "--id".into(), id.clone()];
        if !approve {
            self.mode = Mode::Confirm {
                text: vec![format!("Deny {id}?")],
                words,
            };
            return;
        }
        match self.run(words).await {
            Ok((reply, _)) => {
                let status = reply["status"].as_str().unwrap_or("done").to_owned();
                self.say(Ok(format!("{id}: {status}")));
                self.refresh().await;
            }
            Err(error) if error.contains("electronic signature") => {
                let namespace = item["namespace"].as_str().unwrap_or("");
                self.mode = Mode::Confirm {
                    text: vec![
                        format!("{id} is a legal agreement ({namespace})."),
                        crate::approval::disclosure::TEXT.to_owned(),
                        "Approve it?".into(),
                    ],
                    words: vec!["approve".into(), "--id".into(), id, "--confirm".into()],
                };
            }
            Err(error) => self.say(Err(error)),
        }
    }

    fn draw(&mut self, frame: &mut ratatui::Frame) {
        let [top, body, bottom] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        let titles: Vec<String> = TABS
            .iter()
            .enumerate()
            .map(|(i, (_, name))| format!("{} {name}", i + 1))
            .collect();
        let at = TABS.iter().position(|(t, _)| *t == self.tab).unwrap_or(0);
        frame.render_widget(
            Tabs::new(titles)
                .select(at)
                .highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
            top,
        );
        match &self.mode {
            Mode::Browse => self.draw_tab(frame, body),
            Mode::Help => frame.render_widget(paragraph("Help", help()), body),
            Mode::Templates { selected } => {
                let lines = TEMPLATES
                    .iter()
                    .enumerate()
                    .flat_map(|(i, t)| {
                        let style = if i == *selected {
                            Style::new().add_modifier(Modifier::REVERSED)
                        } else {
                            Style::new()
                        };
                        [
                            Line::styled(format!("{} {}", i + 1, t.name), style),
                            Line::from(format!("    {}", t.about)),
                        ]
                    })
                    .collect::<Vec<_>>();
                frame.render_widget(paragraph("New key: choose a template", lines), body);
            }
            Mode::Form {
                form,
                values,
                focus,
            } => {
                let mut lines = Vec::new();
                for (i, ((label, _), value)) in form.fields().iter().zip(values).enumerate() {
                    let marker = if i == *focus { "> " } else { "  " };
                    lines.push(Line::from(vec![
                        Span::raw(format!("{marker}{label}: ")),
                        Span::styled(value.clone(), Style::new().add_modifier(Modifier::BOLD)),
                    ]));
                }
                lines.push(Line::from(""));
                match check(&form.words(values)) {
                    Some(problem) => lines.push(Line::styled(
                        format!("! {problem}"),
                        Style::new().fg(Color::Red),
                    )),
                    None => lines.push(Line::styled(
                        "ok: Enter on the last field goes ahead",
                        Style::new().fg(Color::Green),
                    )),
                }
                frame.render_widget(paragraph(&form.title(), lines), body);
            }
            Mode::Confirm { text, .. } => {
                let mut lines: Vec<Line> = text.iter().map(|t| Line::from(t.clone())).collect();
                lines.push(Line::from(""));
                lines.push(Line::from("y: yes   n: no"));
                frame.render_widget(paragraph("Confirm", lines), body);
            }
            Mode::Result { title, lines } => {
                let lines: Vec<Line> = lines.iter().map(|l| Line::from(l.clone())).collect();
                frame.render_widget(
                    Paragraph::new(lines)
                        .wrap(Wrap { trim: false })
                        .scroll((self.scroll, 0))
                        .block(Block::new().borders(Borders::ALL).title(title.as_str())),
                    body,
                );
            }
        }
        let hint = match (&self.mode, self.tab) {
            (Mode::Browse, Tab::Keys) => "n new  Enter its grants  r revoke  ? help  q quit",
            (Mode::Browse, Tab::Authorizations) => "n grant  x revoke  g refresh  ? help  q quit",
            (Mode::Browse, Tab::Pending) => "Enter details  a approve  d deny  g refresh  q quit",
            (Mode::Browse, Tab::Negotiations) => "o log an offer  h history  ? help  q quit",
            (Mode::Browse, Tab::Audit) => {
                "↓ past the end: older · sshsign audit check compares with what you saw"
            }
            (Mode::Browse, Tab::Account) => {
                "a accept t TOTP c code p passkey k API key w webhook n notify x remove"
            }
            (Mode::Browse, _) => "1-7/Tab screens  ↑↓ select  g refresh  ? help  q quit",
            (Mode::Form { .. }, _) => "type; ↑↓ fields; Enter next/go; Ctrl-U clear; Esc cancel",
            (Mode::Templates { .. }, _) => "1-4 or ↑↓ Enter choose; Esc cancel",
            (Mode::Result { .. }, _) => "↑↓ space scroll; any other key: back",
            _ => "any key: back",
        };
        let footer = match &self.status {
            Some((true, text)) => Line::styled(text.clone(), Style::new().fg(Color::Red)),
            Some((false, text)) => Line::styled(text.clone(), Style::new().fg(Color::Green)),
            None => Line::styled(hint, Style::new().add_modifier(Modifier::DIM)),
        };
        frame.render_widget(Paragraph::new(footer), bottom);
    }

    fn draw_tab(&mut self, frame: &mut ratatui::Frame, area: Rect) {
        let lines = |title: &'static str, lines: &[String], scroll: u16| {
            Paragraph::new(
                lines
                    .iter()
                    .map(|l| Line::from(l.clone()))
                    .collect::<Vec<_>>(),
            )
            .scroll((scroll, 0))
            .block(Block::new().borders(Borders::ALL).title(title))
        };
        let (title, heads, rows): (String, Vec<&str>, Vec<Vec<String>>) = match self.tab {
            Tab::Welcome => {
                frame.render_widget(paragraph("Welcome", self.welcome()), area);
                return;
            }
            Tab::Account => {
                frame.render_widget(
                    lines(
                        "Approvers, authenticators, API keys",
                        &self.account,
                        self.scroll,
                    ),
                    area,
                );
                return;
            }
            Tab::Negotiations => {
                let shown = if self.negotiation.is_empty() {
                    vec![
                        "o logs an offer (a new negotiation, or the next turn of one);".to_owned(),
                        "h shows a negotiation's offers, their parties and hash chain.".to_owned(),
                        "Offers alternate between the two parties; rounds count from 0.".to_owned(),
                    ]
                } else {
                    self.negotiation.clone()
                };
                frame.render_widget(lines("Negotiations", &shown, self.scroll), area);
                return;
            }
            Tab::Keys => (
                "Your keys".into(),
                vec!["key id", "scopes", "tier", "status", "role", "created"],
                self.keys
                    .iter()
                    .map(|k| {
                        cells(
                            k,
                            &["key_id", "scopes", "tier", "status", "role", "created_at"],
                        )
                    })
                    .collect(),
            ),
            Tab::Authorizations => (
                format!(
                    "Authorizations of {}",
                    self.key.as_deref().unwrap_or("(no key: choose one on 2)")
                ),
                vec!["authorization", "grantee", "scopes", "tier", "status"],
                self.grants
                    .iter()
                    .map(|a| {
                        cells(
                            a,
                            &["authorization_id", "grantee", "scopes", "tier", "status"],
                        )
                    })
                    .collect(),
            ),
            Tab::Pending => (
                "Waiting for you".into(),
                vec!["request", "type", "from", "expires"],
                // A signature request's members, or an approval request's.
                self.pending
                    .iter()
                    .map(|p| {
                        cells(
                            p,
                            &[
                                "pending_id|id",
                                "namespace|action",
                                "requester|owner",
                                "expires_at",
                            ],
                        )
                    })
                    .collect(),
            ),
            Tab::Audit => (
                match &self.checkpoint {
                    Some((size, root)) => format!(
                        "Your entries, newest first · checkpoint {size} entries, root {}…",
                        root.get(..12).unwrap_or(root)
                    ),
                    None => "Your audit entries, newest first".into(),
                },
                vec!["index", "action", "result", "key"],
                self.audit
                    .iter()
                    .map(|e| {
                        cells(
                            e,
                            &["index", "entry.action", "entry.result", "entry.key_id"],
                        )
                    })
                    .collect(),
            ),
        };
        if rows.is_empty() {
            let empty = match self.tab {
                Tab::Keys => "No keys yet: press n to make one from a template.",
                Tab::Authorizations => "No authorizations to show.",
                Tab::Pending => "Nothing waits for you.",
                _ => "Nothing yet.",
            };
            frame.render_widget(
                Paragraph::new(empty).block(Block::new().borders(Borders::ALL).title(title)),
                area,
            );
            return;
        }
        // Each column as wide as what it holds, then fitted to the screen as text tables are.
        let mut widths: Vec<usize> = heads
            .iter()
            .enumerate()
            .map(|(i, head)| {
                rows.iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .max()
                    .unwrap_or(0)
                    .max(head.chars().count())
            })
            .collect();
        super::text::fit_columns(&mut widths, usize::from(area.width).saturating_sub(2), 1);
        let shown = widths.len();
        let heads: Vec<&str> = heads.into_iter().take(shown).collect();
        let rows: Vec<Vec<String>> = rows
            .into_iter()
            .map(|row| row.into_iter().take(shown).collect())
            .collect();
        let widths: Vec<Constraint> = widths
            .into_iter()
            .map(|w| Constraint::Length(u16::try_from(w).unwrap_or(u16::MAX)))
            .collect();
        let table = Table::new(
            rows.into_iter()
                .map(|r| Row::new(r.into_iter().map(Cell::from))),
            widths,
        )
        .column_spacing(1)
        .header(Row::new(heads).style(Style::new().add_modifier(Modifier::BOLD)))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .block(Block::new().borders(Borders::ALL).title(title));
        frame.render_stateful_widget(table, area, &mut self.table);
    }

    fn welcome(&self) -> Vec<Line<'static>> {
        let w = &self.whoami;
        let mut lines = vec![
            Line::from(format!("You are {}", w["user_id"].as_str().unwrap_or("?"))),
            Line::from(format!(
                "This key: {}{}",
                w["fingerprint"].as_str().unwrap_or("?"),
                if w["agent"] == true {
                    " (an agent's)"
                } else {
                    ""
                }
            )),
        ];
        for other in w["ssh_keys"].as_array().into_iter().flatten() {
            if other["current"] != true {
                lines.push(Line::from(format!(
                    "Also yours: {} ({}{})",
                    other["fingerprint"].as_str().unwrap_or("?"),
                    other["kind"].as_str().unwrap_or("person"),
                    other["label"]
                        .as_str()
                        .map(|l| format!(", {l}"))
                        .unwrap_or_default()
                )));
            }
        }
        lines.push(Line::from(format!(
            "Keys: {} of yours, {} granted to you",
            w["keys_owned"], w["keys_granted"]
        )));
        lines.push(Line::from(""));
        if self.keys.is_empty() {
            lines.push(Line::from(
                "First: press 2 then n to make a signing key (it never leaves the token).",
            ));
        }
        if !self.pending.is_empty() {
            lines.push(Line::from(format!(
                "{} request(s) wait for you: press 4.",
                self.pending.len()
            )));
        }
        lines.push(Line::from(
            "Another machine or an agent? link start, then link finish --code with its key.",
        ));
        lines.push(Line::from(""));
        lines.push(Line::from(format!(
            "Audit checkpoint key: {}",
            self.appliance.audit_verifier_key()
        )));
        lines
    }
}

/// A template's fields as they start.
#[cfg(test)]
fn defaults(template: usize) -> Vec<String> {
    TEMPLATES[template]
        .fields
        .iter()
        .map(|(_, default)| (*default).to_owned())
        .collect()
}

/// A table row: each column as text tables show it (`a.b` a member's member, `a|b` the first
/// of them present).
fn cells(item: &Value, columns: &[&str]) -> Vec<String> {
    columns
        .iter()
        .map(|column| {
            column
                .split('|')
                .map(|alternative| super::text::cell(item, alternative))
                .find(|text| !text.is_empty())
                .unwrap_or_default()
        })
        .collect()
}

/// What to do with a new key: its id, and for git the configuration to paste.
fn created_lines(created: &Value) -> Vec<String> {
    let id = created["key_id"].as_str().unwrap_or("?");
    let public = created["public_key"].as_str().unwrap_or("?");
    let mut lines = vec![format!("Created {id}"), String::new()];
    let scopes = &created["authorization"]["scopes"];
    if scopes
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s == "git"))
    {
        lines.extend([
            "Sign your commits with it:".to_owned(),
            "  git config gpg.format ssh".to_owned(),
            "  git config gpg.ssh.program sshsign".to_owned(),
            format!("  git config user.signingkey {id}"),
            String::new(),
            "allowed_signers line (for git verify-commit):".to_owned(),
            format!("  you@example.com namespaces=\"git\" {public}"),
        ]);
    } else {
        lines.push(format!("Public key: {public}"));
    }
    lines
}

fn paragraph<'a>(title: &'a str, lines: Vec<Line<'a>>) -> Paragraph<'a> {
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(Block::new().borders(Borders::ALL).title(title))
}

fn help() -> Vec<Line<'static>> {
    [
        "1 Welcome  2 Keys  3 Grants  4 Pending  5 Offers  6 Audit  7 Account",
        "(Tab and ← → move between them; ↑ ↓ select or scroll; g reads again; q quits.)",
        "",
        "Keys: n makes a key from a template (git commits, a SAFE, an NDA, or your own",
        "terms), checked as you type with create-key's rules; Enter shows its grants;",
        "r revokes. Grants: n grants the key to someone who accepts you; x revokes one.",
        "Pending: Enter shows the terms, the digest and the page (with a QR code);",
        "a approves (a legal agreement shows its disclosure first); d denies.",
        "Offers: o logs an offer (turns alternate); h shows a negotiation's history.",
        "Account: a accept requests from a user; t enroll TOTP (QR code), c confirm",
        "its first code; p a passkey link; k an API key; w a webhook; n where you hear",
        "of requests; x revoke or remove an API key, webhook, authenticator or user.",
        "",
        "Everything here is also a command: ssh <appliance> help.",
    ]
    .into_iter()
    .map(Line::from)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_make_the_words_create_key_takes() {
        let git = create_words(0, &["github.com/acme/*".into(), "main, release/*".into()]);
        assert_eq!(git[..3], ["create-key", "--scope", "git"]);
        assert!(check(&git).is_none(), "{:?}", check(&git));
        assert!(check(&create_words(1, &defaults(1))).is_none());
        assert!(check(&Form::Key(2).words(&defaults(2))).is_none());
        let grant = Form::Grant("ak_x".into()).words(&[
            "usr_y".into(),
            "deploy".into(),
            "cosign".into(),
            "{}".into(),
        ]);
        assert_eq!(grant[..3], ["authorize", "--key-id", "ak_x"]);
        assert!(check(&grant).is_none(), "{:?}", check(&grant));
        let offer = Form::Offer.words(&[
            "".into(),
            "0".into(),
            "founder".into(),
            "offer".into(),
            "{}".into(),
        ]);
        assert!(check(&offer).is_none(), "{:?}", check(&offer));
        let bad = Form::Offer.words(&[
            "".into(),
            "zero".into(),
            "founder".into(),
            "offer".into(),
            "{}".into(),
        ]);
        assert!(check(&bad).is_some());
        let nda = create_words(2, &["mutual, one-way".into(), "1".into(), "10".into()]);
        assert!(check(&nda).is_none(), "{:?}", check(&nda));
        // Mistakes are told in create-key's own words, as they are typed.
        let bad = create_words(2, &["mutual".into(), "ten".into(), "1".into()]);
        assert!(check(&bad).is_some());
        let custom = |values: &[&str]| {
            let mut all: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
            all.resize(11, String::new());
            create_words(3, &all)
        };
        let bad = custom(&["has space", "autonomous"]);
        assert!(
            check(&bad).unwrap().contains("--scope"),
            "{:?}",
            check(&bad)
        );
        let bad = custom(&["file", "sometimes"]);
        assert!(check(&bad).unwrap().contains("sometimes"));
        // Typed constraints, a row each, as create-key takes them.
        let typed = custom(&[
            "invoice",
            "cosign",
            "amount",
            "range",
            "10, 500",
            "currency",
            "enum",
            "EUR, USD",
            "signed_po",
            "required",
            "yes",
        ]);
        assert!(check(&typed).is_none(), "{:?}", check(&typed));
        let constraints: Value = serde_json::from_str(typed.last().unwrap()).unwrap();
        assert_eq!(constraints["amount"], json!({"min": 10, "max": 500}));
        assert_eq!(constraints["currency"]["allowed"], json!(["EUR", "USD"]));
        assert_eq!(constraints["signed_po"]["required"], true);
        // A range without its maximum, or a type that does not exist, is told as typed.
        assert!(check(&custom(&["file", "autonomous", "amount", "range", "10"])).is_some());
        assert!(check(&custom(&["file", "autonomous", "amount", "between", "1"])).is_some());
    }
}
