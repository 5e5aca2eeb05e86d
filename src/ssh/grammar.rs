//! The command grammar: splitting an exec request's command line into words, and the commands
//! and flags (the sshsign seed's names) parsed from them with clap.
//!
//! `ssh host cmd args...` sends one string: the client joins its arguments with spaces and the
//! shell quoting the user typed is gone. So words are split on whitespace, with three groupings:
//! a JSON object or array is one word however many spaces it holds (`--constraints
//! '{"a": {"min": 1}}'` works as typed), and `'...'` and `"..."` group as in sh, for users who
//! quote once more for the remote side.

use clap::{ColorChoice, Parser, Subcommand};

use super::commands::{
    api_keys, approvals, audit, consent, cosign, enroll, grants, keys, negotiate, sign, verify,
    webhooks, whoami,
};

/// The longest command line accepted.
pub const MAX_COMMAND_LINE: usize = 256 * 1024;

/// Why a command line could not be split.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("unterminated quote")]
    UnterminatedQuote,
    #[error("unbalanced JSON value: a {{ or [ is never closed")]
    UnbalancedJson,
    #[error("the command line is longer than {MAX_COMMAND_LINE} bytes")]
    TooLong,
    #[error("the command line is not UTF-8")]
    NotUtf8,
}

/// Splits a command line into words.
pub fn split(line: &[u8]) -> Result<Vec<String>, SplitError> {
    if line.len() > MAX_COMMAND_LINE {
        return Err(SplitError::TooLong);
    }
    let line = std::str::from_utf8(line).map_err(|_| SplitError::NotUtf8)?;
    let mut words = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let word = match c {
            '{' | '[' => {
                let end = json_end(line, start)?;
                while chars.peek().is_some_and(|&(i, _)| i < end) {
                    chars.next();
                }
                line[start..end].to_owned()
            }
            _ => {
                let mut word = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    chars.next();
                    match c {
                        '\'' => loop {
                            match chars.next() {
                                Some((_, '\'')) => break,
                                Some((_, c)) => word.push(c),
                                None => return Err(SplitError::UnterminatedQuote),
                            }
                        },
                        '"' => loop {
                            match chars.next() {
                                Some((_, '"')) => break,
                                Some((_, '\\')) => match chars.next() {
                                    Some((_, c)) => word.push(c),
                                    None => return Err(SplitError::UnterminatedQuote),
                                },
                                Some((_, c)) => word.push(c),
                                None => return Err(SplitError::UnterminatedQuote),
                            }
                        },
                        c => word.push(c),
                    }
                }
                word
            }
        };
        words.push(word);
    }
    Ok(words)
}

/// The byte just past the JSON value opening at `start`, tracking strings and escapes.
fn json_end(line: &str, start: usize) -> Result<usize, SplitError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in line[start..].char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(start + i + c.len_utf8());
                }
            }
            _ => {}
        }
    }
    Err(SplitError::UnbalancedJson)
}

/// `ssh <appliance> COMMAND [FLAGS]`: every reply is one JSON document.
#[derive(Debug, Parser)]
#[command(
    name = "ssh <appliance>",
    no_binary_name = true,
    disable_help_subcommand = true,
    disable_version_flag = true,
    color = ColorChoice::Never,
    help_template = "{usage-heading} {usage}\n\n{all-args}"
)]
pub struct CommandLine {
    #[command(subcommand)]
    pub command: Command,
    /// How to write the reply: json (the default without a terminal) or text (with one).
    #[arg(long, global = true, value_enum)]
    pub format: Option<super::text::Format>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the user your SSH key identifies, and every SSH key of theirs.
    Whoami,
    /// Join another SSH key to your identity, with proof that you hold it.
    #[command(subcommand)]
    Link(whoami::LinkCommand),
    /// Remove one of your SSH keys (never the last).
    Unlink(whoami::UnlinkArgs),
    /// Create an Ed25519 signing key inside the token, with its first authorization.
    CreateKey(keys::CreateArgs),
    /// List the keys you own and the keys you are granted.
    Keys(keys::ListArgs),
    /// Revoke one of your keys; its private half is destroyed in the token.
    Revoke(keys::RevokeArgs),
    /// The device's proof that it generated one of your keys (YubiHSM 2), for `sshsign
    /// verify-attestation`; tokens that cannot attest say why.
    Attest(keys::AttestArgs),
    /// Grant another authorization on a key you own.
    Authorize(grants::AuthorizeArgs),
    /// List a key's authorizations.
    Authorizations(grants::ListArgs),
    /// Revoke one authorization; the key and its other authorizations stay.
    RevokeAuthorization(grants::RevokeArgs),
    /// Sign the payload on stdin (SSHSIG; git commit signing uses --type git).
    Sign(sign::Args),
    /// Verify an SSHSIG over the payload on stdin.
    Verify(verify::Args),
    /// List co-signed requests you must decide or are waiting on.
    Pending(super::commands::PageArgs),
    /// Approve a co-signed request (pnd_) or an approval request (apr_) that allows ssh.
    Approve(cosign::ApproveArgs),
    /// Deny a co-signed request (pnd_) or reject an approval request (apr_).
    Deny(cosign::DenyArgs),
    /// A request's status (pnd_ or apr_) and, once decided, its signature or signed decision;
    /// with --wait, once it is decided.
    GetEnvelope(cosign::EnvelopeArgs),
    /// Ask people for a decision (what the REST API's POST /api/v1/approvals/request does,
    /// with your SSH key instead of an API key).
    RequestApproval(approvals::RequestArgs),
    /// The keys decisions are signed with, as a JWK set (for offline checks).
    Jwks,
    /// Log a negotiation offer (turns alternate, rounds count from 0).
    LogOffer(negotiate::LogOfferArgs),
    /// A negotiation's offers, for its parties.
    History(negotiate::HistoryArgs),
    /// The audit log's latest signed checkpoint.
    AuditCheckpoint,
    /// An audit entry of yours with its inclusion proof.
    AuditProof(audit::ProofArgs),
    /// A consistency proof between two sizes of the audit log.
    AuditConsistency(audit::ConsistencyArgs),
    /// Your audit entries.
    AuditEntries(audit::EntriesArgs),
    /// Make or revoke an API key for the REST API.
    #[command(subcommand)]
    ApiKey(api_keys::ApiKeyCommand),
    /// List your API keys.
    ApiKeys,
    /// Enroll a passkey (a one-time browser link) or a TOTP secret.
    #[command(subcommand)]
    Enroll(enroll::EnrollCommand),
    /// List your passkeys and TOTP secrets.
    Authenticators,
    /// Remove one of your authenticators, or reopen a TOTP secret wrong codes closed.
    #[command(subcommand)]
    Authenticator(enroll::AuthenticatorCommand),
    /// Add or remove an endpoint for the decisions on your approval requests.
    #[command(subcommand)]
    Webhook(webhooks::WebhookCommand),
    /// List your webhook endpoints and the key their messages are signed with.
    Webhooks,
    /// Where you hear of requests waiting for you.
    #[command(subcommand)]
    Notify(webhooks::NotifyCommand),
    /// Whom you accept approval requests and authorizations from.
    #[command(subcommand)]
    Approvers(consent::ApproversCommand),
    /// Show the commands and their flags.
    Help,
    /// Many requests over this one channel: newline-delimited JSON, many in flight (see the
    /// README's "One session, many requests").
    Session,
}

impl Command {
    /// Whether the command reads a payload from stdin (and so waits for its end).
    pub fn reads_stdin(&self) -> bool {
        matches!(self, Command::Sign(_) | Command::Verify(_))
    }
}

/// Parses split words into a command and the reply format asked for, if any. The clap command
/// tree is built once per thread and reused: building it costs more than parsing a command
/// line with it.
pub fn parse(words: Vec<String>) -> Result<(Command, Option<super::text::Format>), clap::Error> {
    use clap::{CommandFactory as _, FromArgMatches as _};
    thread_local! {
        static GRAMMAR: std::cell::RefCell<clap::Command> = std::cell::RefCell::new(CommandLine::command());
    }
    let matches = GRAMMAR.with_borrow_mut(|grammar| grammar.try_get_matches_from_mut(words))?;
    CommandLine::from_arg_matches(&matches).map(|parsed| (parsed.command, parsed.format))
}

/// The help text for the whole grammar.
pub fn help() -> String {
    use clap::CommandFactory as _;
    CommandLine::command().render_long_help().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split(line.as_bytes()).unwrap()
    }

    #[test]
    fn json_values_stay_whole() {
        assert_eq!(
            words(
                r#"create-key --constraints {"cap": {"min": 5, "max": 15}, "n": "a b}"} --tier cosign"#
            ),
            [
                "create-key",
                "--constraints",
                r#"{"cap": {"min": 5, "max": 15}, "n": "a b}"}"#,
                "--tier",
                "cosign"
            ]
        );
        assert_eq!(words(r#"x [1, "]", 2]"#), ["x", r#"[1, "]", 2]"#]);
    }

    #[test]
    fn quotes_group_as_in_sh() {
        assert_eq!(
            words(r#"sign --metadata '{"a": 1}' --type "my ns" x\y"#),
            [
                "sign",
                "--metadata",
                r#"{"a": 1}"#,
                "--type",
                "my ns",
                r"x\y"
            ]
        );
        assert_eq!(words(r#"a"b c"d"#), ["ab cd"]);
        assert_eq!(words("  keys   "), ["keys"]);
        assert!(words("").is_empty());
    }

    #[test]
    fn broken_lines_are_refused() {
        assert_eq!(split(b"sign 'oops"), Err(SplitError::UnterminatedQuote));
        assert_eq!(split(br#"x {"a": 1"#), Err(SplitError::UnbalancedJson));
        assert_eq!(split(&[0xff]), Err(SplitError::NotUtf8));
        assert_eq!(
            split(&vec![b'a'; MAX_COMMAND_LINE + 1]),
            Err(SplitError::TooLong)
        );
    }

    #[test]
    fn grammar_is_consistent() {
        use clap::CommandFactory as _;
        CommandLine::command().debug_assert();
        assert!(help().contains("create-key"));
    }
}
