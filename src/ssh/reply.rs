//! A command's reply: one JSON document on stdout, then an exit status. Errors are
//! `{"error": {"code": "...", "message": "..."}}` with status 1, or 2 for a command line that
//! does not parse (unknown command or flag, missing value).

use serde_json::{Value, json};

use super::grammar::SplitError;
use crate::appliance::Error;

/// Exit status for a failed command.
pub const FAILED: u32 = 1;
/// Exit status for a command line that does not parse.
pub const USAGE: u32 = 2;

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub exit_status: u32,
    pub body: Value,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Reply {
            exit_status: 0,
            body,
        }
    }

    pub fn error(exit_status: u32, code: &str, message: impl Into<String>) -> Self {
        Reply {
            exit_status,
            body: json!({ "error": { "code": code, "message": message.into() } }),
        }
    }

    /// The reply for a failed command; internal causes are logged, not shown.
    pub fn from_error(error: &Error) -> Self {
        if error.is_internal() {
            tracing::error!(code = error.code(), error = %error, "command failed");
        }
        Reply::error(FAILED, error.code(), error.public_message())
    }

    /// The reply for a command line clap refused (or the help it was asked for).
    pub fn from_clap(error: &clap::Error) -> Self {
        use clap::error::ErrorKind;
        let code = match error.kind() {
            ErrorKind::DisplayHelp => return Reply::ok(json!({ "help": error.to_string() })),
            ErrorKind::InvalidSubcommand => "unknown_command",
            ErrorKind::UnknownArgument => "unknown_flag",
            ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                "missing_command"
            }
            _ => "invalid_usage",
        };
        let rendered = error.to_string();
        let message: Vec<&str> = rendered
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("Usage:"))
            .filter(|line| !line.starts_with("For more information"))
            .collect();
        let message = message.join(" ");
        let message = message.strip_prefix("error: ").unwrap_or(&message);
        Reply::error(USAGE, code, message)
    }

    pub fn from_split(error: &SplitError) -> Self {
        Reply::error(
            USAGE,
            "invalid_usage",
            format!("cannot read the command line: {error}"),
        )
    }

    /// The bytes sent on stdout: pretty JSON and a newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(&self.body).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}
