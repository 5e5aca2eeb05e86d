//! A command's reply: one JSON document on stdout, then an exit status. Errors are
//! `{"error": {"code": "...", "message": "..."}}` with status 1, or 2 for a command line that
//! does not parse (unknown command or flag, missing value).

use serde_json::Value;

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
            body: crate::views::to_value(&crate::views::ErrorView {
                error: crate::views::ErrorBody {
                    code: code.to_owned(),
                    message: message.into(),
                },
            }),
        }
    }

    /// The reply for a failed command; internal causes are logged, not shown.
    pub fn from_error(error: &Error) -> Self {
        if error.is_internal() {
            tracing::error!(code = error.code(), error = %error, "command failed");
        }
        let mut reply = Reply::error(FAILED, error.code(), in_flags(error));
        if let Error::ConsentRequired {
            id,
            namespace,
            metadata,
        } = error
        {
            // The seed's reply, so that its clients read it; the status says nothing was
            // approved.
            let disclosure = crate::views::ConsentDisclosure {
                consent_required: true,
                pending_id: id.clone(),
                doc_type: namespace.clone(),
                metadata: (**metadata).clone(),
                disclosure: format!(
                    "{} Re-run with --confirm to approve.",
                    crate::approval::disclosure::TEXT
                ),
                version: crate::approval::disclosure::VERSION,
            };
            if let (Value::Object(body), Value::Object(error)) =
                (crate::views::to_value(&disclosure), reply.body.take())
            {
                reply.body = Value::Object(body.into_iter().chain(error).collect());
            }
        }
        reply
    }

    /// The reply for a command line clap refused (or the help it was asked for).
    pub fn from_clap(error: &clap::Error) -> Self {
        use clap::error::ErrorKind;
        let code = match error.kind() {
            ErrorKind::DisplayHelp => {
                let help = crate::views::HelpView {
                    help: error.to_string(),
                };
                return Reply::ok(crate::views::to_value(&help));
            }
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

/// An error's message in the words of the command line: where the domain names a field, the
/// flag that sets it.
fn in_flags(error: &Error) -> String {
    use crate::negotiation::Refusal;
    let flag = |field: &str| format!("--{}", field.replace('_', "-"));
    match error {
        Error::Invalid { field, reason } | Error::Unprocessable { field, reason } => {
            format!("{} {reason}", flag(field))
        }
        Error::Negotiation(Refusal::Unknown(id)) => format!(
            "unknown negotiation {id} (a new negotiation starts without {}: the appliance \
             assigns its id)",
            flag("negotiation_id")
        ),
        other => other.public_message(),
    }
}

#[cfg(test)]
mod words {
    use super::*;

    #[test]
    fn fields_are_named_by_their_flags() {
        let invalid = Error::Invalid {
            field: "require_signature",
            reason: "needs the cosign tier".into(),
        };
        assert_eq!(
            in_flags(&invalid),
            "--require-signature needs the cosign tier"
        );
        let unknown = Error::from(crate::negotiation::Refusal::Unknown("neg_x".into()));
        assert!(in_flags(&unknown).contains("without --negotiation-id"));
        // Over REST the same error names the JSON member.
        assert_eq!(
            invalid.public_message(),
            "require_signature needs the cosign tier"
        );
        let other = Error::UnknownRequest("apr_x".into());
        assert_eq!(in_flags(&other), other.public_message());
    }
}
