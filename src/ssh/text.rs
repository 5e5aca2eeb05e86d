//! Replies for people: what a command's JSON reply says, as aligned text and tables that fit
//! the terminal, with colour only where there is one. A client that asked for a PTY gets this
//! unless it says `--format json`; anyone gets it with `--format text`. Without a PTY the reply
//! stays one JSON document: scripts and the shim read it.
//!
//! The text is made from the JSON reply itself, so the two never say different things: scalar
//! members become `label  value` lines, lists of objects become tables (with the columns a
//! person looks at first, [`columns_for`]), nested objects become indented sections, and text
//! of several lines (an armored signature, a checkpoint, the help) stands as a block.

use serde_json::{Map, Value};

/// How a reply is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON document (the default without a terminal).
    Json,
    /// Aligned text and tables (the default on a terminal).
    Text,
}

/// The terminal a reply is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminal {
    pub cols: usize,
    pub rows: usize,
    /// Whether to colour (a terminal that is not `dumb`).
    pub colour: bool,
}

impl Terminal {
    /// The terminal a PTY request describes (0 columns or rows: the usual 80 by 24).
    pub fn from_pty(term: &str, cols: u32, rows: u32) -> Self {
        let size = |n: u32, default: usize| match usize::try_from(n) {
            Ok(0) | Err(_) => default,
            Ok(n) => n.clamp(20, 1_000),
        };
        Terminal {
            cols: size(cols, 80),
            rows: size(rows, 24),
            colour: !term.is_empty() && term != "dumb",
        }
    }

    /// Text without a terminal (`--format text` over a plain channel): 100 columns, no colour.
    pub const PLAIN: Terminal = Terminal {
        cols: 100,
        rows: 24,
        colour: false,
    };
}

/// The reply `body` (exit status `ok`) as text for `terminal`, newline-terminated.
pub fn render(body: &Value, terminal: &Terminal) -> String {
    let mut out = Writer {
        text: String::new(),
        terminal: *terminal,
    };
    match body {
        Value::Object(map) if map.len() == 1 && map.get("help").is_some_and(Value::is_string) => {
            out.block("", map["help"].as_str().unwrap_or_default());
        }
        Value::Object(map) => {
            if let Some(error) = map.get("error").and_then(Value::as_object) {
                let message = error.get("message").and_then(Value::as_str).unwrap_or("");
                let line = format!("{} {message}", out.paint(Paint::Bad, "error:"));
                out.wrapped(&line, 0);
                let rest: Map<String, Value> = map
                    .iter()
                    .filter(|(k, _)| *k != "error")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !rest.is_empty() {
                    out.text.push('\n');
                    out.object(&rest, 0);
                }
            } else {
                out.object(map, 0);
            }
        }
        other => out.scalar_line("", other, 0),
    }
    if let Some(next) = body.get("next").and_then(Value::as_u64) {
        let more = format!("more: run the command again with --from {next}");
        out.text.push('\n');
        let painted = out.paint(Paint::Dim, &more);
        out.text.push_str(&painted);
        out.text.push('\n');
    }
    out.text
}

/// With a PTY the client's terminal is raw: a line ends in CR LF.
pub fn for_pty(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 16);
    let mut previous = 0u8;
    for &byte in text {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    out
}

#[derive(Clone, Copy)]
enum Paint {
    Bold,
    Dim,
    Good,
    Bad,
    Waiting,
}

struct Writer {
    text: String,
    terminal: Terminal,
}

/// Words that say how something stands, and how they are coloured.
fn status_paint(word: &str) -> Option<Paint> {
    match word {
        "active" | "approved" | "signed" | "person" | "valid" | "delivered" | "confirmed" => {
            Some(Paint::Good)
        }
        "revoked" | "denied" | "rejected" | "expired" | "retired" | "closed" | "failed" => {
            Some(Paint::Bad)
        }
        "pending" | "pending_cosign" | "agent" | "unconfirmed" => Some(Paint::Waiting),
        _ => None,
    }
}

/// The columns a person looks at first in a list, by the list's name; `a.b` reads a member of
/// a member, and `scopes` and `tier` of a key gather its authorizations'.
fn columns_for(list: &str) -> Option<&'static [&'static str]> {
    Some(match list {
        "keys" => &["key_id", "scopes", "tier", "status", "role", "created_at"],
        "authorizations" => &[
            "authorization_id",
            "grantee",
            "status",
            "scopes",
            "tier",
            "expires_at",
        ],
        "to_decide" | "requested" => &[
            "pending_id",
            "namespace",
            "requester",
            "status",
            "expires_at",
        ],
        "approvals" => &["id", "action", "status", "threshold", "expires_at"],
        "entries" => &[
            "index",
            "entry.time",
            "entry.action",
            "entry.result",
            "entry.key_id",
        ],
        "ssh_keys" => &["fingerprint", "kind", "label", "linked_at", "current"],
        "offers" => &["round", "from", "speaker", "type", "time"],
        "api_keys" => &["id", "label", "prefix", "created_at", "revoked_at"],
        "authenticators" => &["id", "type", "label", "state", "last_used_at"],
        _ => return None,
    })
}

/// A member by a dotted path.
fn at<'a>(item: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(item, |value, part| value.get(part))
}

/// Column widths fitted into `room` characters, `gap` between columns: the last columns (the
/// least looked at) go first, then the widest give way, to no less than 8; the first (what the
/// row is: an id to copy) stays whole.
pub fn fit_columns(widths: &mut Vec<usize>, room: usize, gap: usize) {
    let total = |widths: &[usize]| widths.iter().sum::<usize>() + gap * widths.len();
    while widths.len() > 2 && total(widths) > room {
        widths.pop();
    }
    while total(widths) > room {
        let Some((widest, _)) = widths
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, w)| **w > 8)
            .max_by_key(|(_, w)| **w)
        else {
            break;
        };
        widths[widest] -= 1;
    }
}

/// An RFC 3339 time to the minute (`2026-11-29 06:00`), as a table shows it; other text as it
/// is.
pub fn short_time(text: &str) -> String {
    match text.get(..16) {
        Some(minute) if text.len() >= 20 && text.as_bytes().get(10) == Some(&b'T') => {
            minute.replacen('T', " ", 1)
        }
        _ => text.to_owned(),
    }
}

/// A table cell: `scopes` and `tier` of a key come from its authorizations; times to the
/// minute.
pub fn cell(item: &Value, column: &str) -> String {
    if let Some(value) = at(item, column) {
        let text = inline(value, column);
        let is_time = column.ends_with("_at") || column.ends_with("time");
        return if is_time { short_time(&text) } else { text };
    }
    let gathered = |member: &str| {
        // Each word once, with the seed's word for it where any authorization gives one.
        let mut words: Vec<(String, Option<String>)> = Vec::new();
        for auth in item
            .get("authorizations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let values = match auth.get(member) {
                Some(Value::Array(list)) => list.clone(),
                Some(other) => vec![other.clone()],
                None => vec![],
            };
            for value in values {
                let word = inline(&value, member);
                let alias = auth
                    .get("scope_aliases")
                    .and_then(|a| a.get(&word))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                match words.iter_mut().find(|(w, _)| *w == word) {
                    Some((_, known)) => *known = known.take().or(alias),
                    None => words.push((word, alias)),
                }
            }
        }
        words
            .into_iter()
            .map(|(word, alias)| match alias {
                Some(alias) => format!("{word} ({alias})"),
                None => word,
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match column {
        "scopes" | "tier" => gathered(column),
        _ => String::new(),
    }
}

/// A value on one line.
fn inline(value: &Value, name: &str) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.lines().next().unwrap_or("").to_owned(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) if name.ends_with("time") => n
            .as_i64()
            .map_or_else(|| n.to_string(), crate::time::rfc3339),
        Value::Number(n) => n.to_string(),
        Value::Array(list) if list.iter().all(|v| !v.is_object() && !v.is_array()) => list
            .iter()
            .map(|v| inline(v, name))
            .collect::<Vec<_>>()
            .join(", "),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Where a member stands among its object's lines (JSON objects here keep no order): what it
/// is first, then how it stands, then the rest, then when.
fn rank(name: &str) -> u8 {
    match name {
        "id" => 0,
        _ if name.ends_with("_id") => 0,
        "status" | "kind" | "role" | "type" | "namespace" => 1,
        _ if name.ends_with("_at") || name.ends_with("time") => 3,
        _ => 2,
    }
}

fn label(name: &str) -> String {
    name.replace('_', " ")
}

/// `text` in lines of at most `width` characters, broken at spaces (a word longer than the
/// line stands alone, whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split(' ') {
        if !current.is_empty() && current.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    lines.push(current);
    lines
}

/// Cuts `text` to `width` characters, marking the cut.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

impl Writer {
    fn paint(&self, paint: Paint, text: &str) -> String {
        if !self.terminal.colour {
            return text.to_owned();
        }
        let code = match paint {
            Paint::Bold => "1",
            Paint::Dim => "2",
            Paint::Good => "32",
            Paint::Bad => "31",
            Paint::Waiting => "33",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// `text` in the colour of its status word, if it is one.
    fn status(&self, text: &str) -> String {
        match status_paint(text.trim_end()) {
            Some(paint) => self.paint(paint, text),
            None => text.to_owned(),
        }
    }

    fn indent(&mut self, depth: usize) {
        self.text.push_str(&"  ".repeat(depth));
    }

    /// A line wrapped at the terminal's width.
    fn wrapped(&mut self, line: &str, depth: usize) {
        let width = self.terminal.cols.saturating_sub(2 * depth).max(20);
        for part in wrap(line, width) {
            self.indent(depth);
            self.text.push_str(&part);
            self.text.push('\n');
        }
    }

    fn block(&mut self, title: &str, text: &str) {
        if !title.is_empty() {
            let title = self.paint(Paint::Bold, &label(title));
            self.text.push_str(&title);
            self.text.push('\n');
        }
        for line in text.lines() {
            self.text.push_str(line);
            self.text.push('\n');
        }
    }

    fn scalar_line(&mut self, name: &str, value: &Value, depth: usize) {
        self.indent(depth);
        self.text.push_str(&self.status(&inline(value, name)));
        self.text.push('\n');
    }

    fn object(&mut self, map: &Map<String, Value>, depth: usize) {
        let is_line = |(name, value): &(&String, &Value)| {
            *name != "next"
                && match value {
                    Value::String(s) => !s.contains('\n'),
                    Value::Array(list) => list.iter().all(|v| !v.is_object() && !v.is_array()),
                    Value::Object(_) => false,
                    _ => true,
                }
        };
        let mut lines: Vec<(&String, &Value)> = map.iter().filter(|e| is_line(e)).collect();
        lines.sort_by_key(|(name, _)| (rank(name), *name));
        let width = lines
            .iter()
            .map(|(name, _)| label(name).chars().count())
            .max()
            .unwrap_or(0);
        for (name, value) in &lines {
            self.indent(depth);
            let padded = format!("{:width$}", label(name));
            let painted = self.paint(Paint::Bold, &padded);
            self.text.push_str(&painted);
            self.text.push_str("  ");
            // Prose wraps under itself; a token (a key, a code, a URL) stays whole, however
            // long: it is what people copy.
            let room = self
                .terminal
                .cols
                .saturating_sub(2 * depth + width + 2)
                .max(20);
            let value = inline(value, name);
            let mut first = true;
            for line in wrap(&value, room) {
                if !first {
                    self.text.push_str(&" ".repeat(2 * depth + width + 2));
                }
                first = false;
                let shown = self.status(&line);
                self.text.push_str(&shown);
                self.text.push('\n');
            }
        }
        // Lists first (what a listing is for), then sections, then blocks of text.
        let mut rest: Vec<(&String, &Value)> = map.iter().filter(|e| !is_line(e)).collect();
        rest.sort_by_key(|(name, value)| {
            let order = match value {
                Value::Array(_) => 0,
                Value::Object(_) => 1,
                _ => 2,
            };
            (order, *name)
        });
        for (name, value) in rest {
            if name == "next" {
                continue;
            }
            if !self.text.is_empty() && !self.text.ends_with("\n\n") {
                self.text.push('\n');
            }
            match value {
                Value::String(text) => self.block(name, text),
                Value::Object(inner) if inner.is_empty() => {}
                Value::Object(inner) => {
                    self.indent(depth);
                    let title = self.paint(Paint::Bold, &label(name));
                    self.text.push_str(&title);
                    self.text.push('\n');
                    self.object(inner, depth + 1);
                }
                Value::Array(items) => self.table(name, items, depth),
                _ => {}
            }
        }
    }

    fn table(&mut self, name: &str, items: &[Value], depth: usize) {
        self.indent(depth);
        let title = format!("{} ({})", label(name), items.len());
        let title = self.paint(Paint::Bold, &title);
        self.text.push_str(&title);
        self.text.push('\n');
        if items.is_empty() {
            self.indent(depth + 1);
            let none = self.paint(Paint::Dim, "none");
            self.text.push_str(&none);
            self.text.push('\n');
            return;
        }
        let columns: Vec<String> = match columns_for(name) {
            Some(columns) => columns.iter().map(|c| (*c).to_owned()).collect(),
            None => items[0]
                .as_object()
                .map(|first| {
                    first
                        .iter()
                        .filter(|(_, v)| !v.is_object() && !v.is_array())
                        .map(|(k, _)| k.clone())
                        .take(6)
                        .collect()
                })
                .unwrap_or_default(),
        };
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|item| columns.iter().map(|c| cell(item, c)).collect())
            .collect();
        let heads: Vec<String> = columns
            .iter()
            .map(|c| label(c.rsplit('.').next().unwrap_or(c)))
            .collect();
        let mut widths: Vec<usize> = heads.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (width, value) in widths.iter_mut().zip(row) {
                *width = (*width).max(value.chars().count());
            }
        }
        fit_columns(
            &mut widths,
            self.terminal.cols.saturating_sub(2 * (depth + 1)),
            2,
        );
        let heads = &heads[..widths.len()];
        let line = |writer: &mut Writer, cells: &[String], head: bool| {
            writer.indent(depth + 1);
            for (i, (value, width)) in cells.iter().zip(&widths).enumerate() {
                let shown = fit(value, *width);
                let padded = if i + 1 == cells.len() {
                    shown
                } else {
                    format!("{shown:width$}  ")
                };
                let painted = if head {
                    writer.paint(Paint::Bold, &padded)
                } else {
                    writer.status(&padded)
                };
                writer.text.push_str(&painted);
            }
            writer.text.push('\n');
        };
        line(self, heads, true);
        for row in &rows {
            line(self, &row[..widths.len()], false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NARROW: Terminal = Terminal {
        cols: 60,
        rows: 24,
        colour: false,
    };

    #[test]
    fn lists_become_tables_that_fit_the_terminal() {
        let keys = json!({
            "keys": [{
                "key_id": "ak_7xm3aaaaaaaaaaaaaaaaaaaaaa",
                "role": "owner",
                "status": "active",
                "created_at": "2026-11-29T06:00:00Z",
                "authorizations": [
                    {"scopes": ["git"], "scope_aliases": {"git": "git-commit"}, "tier": "autonomous"},
                    {"scopes": ["git", "nda"], "tier": "cosign"}
                ]
            }],
            "next": 1000
        });
        let text = render(&keys, &NARROW);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "keys (1)");
        assert!(lines[1].trim_start().starts_with("key id"), "{text}");
        assert!(
            lines[2].contains("ak_7xm3aaaaaaaaaaaaaaaaaaaaaa"),
            "ids stay whole: {text}"
        );
        let wide = Terminal {
            cols: 120,
            ..NARROW
        };
        let text_wide = render(&keys, &wide);
        assert!(text_wide.contains("git (git-commit), nda"), "{text_wide}");
        assert!(text_wide.contains("2026-11-29 06:00"), "{text_wide}");
        assert!(text.lines().all(|l| l.chars().count() <= 60), "{text}");
        assert!(text.contains("--from 1000"), "{text}");
        assert!(!text.contains('\x1b'), "no colour without a terminal");
    }

    #[test]
    fn objects_align_and_errors_and_help_read_as_words() {
        let text = render(
            &json!({"user_id": "usr_a", "fingerprint": "SHA256:x", "keys_owned": 2}),
            &NARROW,
        );
        assert_eq!(
            text,
            "user id      usr_a\nfingerprint  SHA256:x\nkeys owned   2\n"
        );
        let text = render(
            &json!({"expires_at": "tomorrow", "status": "pending", "pending_id": "pnd_x"}),
            &NARROW,
        );
        assert_eq!(
            text,
            "pending id  pnd_x\nstatus      pending\nexpires at  tomorrow\n"
        );
        let error = json!({"error": {"code": "unknown_key", "message": "unknown key id ak_x"}});
        assert_eq!(render(&error, &NARROW), "error: unknown key id ak_x\n");
        let help = json!({"help": "Usage: ssh <appliance> COMMAND\n\nCommands:\n  keys"});
        assert_eq!(
            render(&help, &NARROW),
            "Usage: ssh <appliance> COMMAND\n\nCommands:\n  keys\n"
        );
        let coloured = Terminal {
            colour: true,
            ..NARROW
        };
        assert!(render(&error, &coloured).starts_with("\x1b[31merror:\x1b[0m"));
        // Prose wraps under its column; a long token stays whole.
        let long = json!({"how": "a b c d e f g h i j k l m n o p q r s t u v w x y z ".repeat(4), "key": "K".repeat(90)});
        let text = render(&long, &NARROW);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 3, "{text}");
        assert!(lines[1].starts_with("     "), "{text}");
        assert!(text.contains(&"K".repeat(90)), "{text}");
    }

    #[test]
    fn a_pty_gets_carriage_returns_once() {
        assert_eq!(for_pty(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn pty_sizes_are_bounded() {
        assert_eq!(Terminal::from_pty("xterm", 0, 0).cols, 80);
        assert_eq!(Terminal::from_pty("xterm", 5, 99_999).rows, 1_000);
        assert!(!Terminal::from_pty("dumb", 80, 24).colour);
    }
}
