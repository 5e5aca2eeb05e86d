//! `enroll passkey`, `enroll totp [--label L] [--code C]`, `authenticators`,
//! `authenticator remove --id aut_...`, `authenticator reopen --id aut_...`: how an approver
//! proves themselves in the browser.

use serde_json::Value;

use super::Context;
use crate::appliance::{ENROLLMENT_TTL, Error};
use crate::views::{AuthenticatorList, EnrolledTotp, to_value};

#[derive(Debug, clap::Subcommand)]
pub enum EnrollCommand {
    /// Print a one-time link that registers a passkey for you (open it in your browser).
    Passkey,
    /// Make a TOTP secret (shown once, with its QR code on stderr); confirm it with --code.
    Totp {
        /// What the authenticator app is.
        #[arg(long, default_value = "authenticator app")]
        label: String,
        /// The first code from the app, which confirms the secret.
        #[arg(long)]
        code: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AuthenticatorCommand {
    /// Remove a passkey or TOTP secret; it stops working at once.
    Remove {
        /// The authenticator (aut_...).
        #[arg(long)]
        id: String,
    },
    /// Reopen a TOTP secret that wrong codes closed (see `authenticators` and the audit log for
    /// who entered them).
    Reopen {
        /// The TOTP secret (aut_...).
        #[arg(long)]
        id: String,
    },
}

pub async fn enroll(command: EnrollCommand, ctx: &Context) -> Result<Value, Error> {
    match command {
        EnrollCommand::Passkey => {
            let enrollment = ctx.appliance.enroll_passkey(&ctx.caller).await?;
            ctx.notice(&format!(
                "Open this link in your browser within {} minutes to register a passkey:\n\n  {}\n",
                ENROLLMENT_TTL / 60,
                enrollment.enrollment_url
            ));
            Ok(to_value(&enrollment))
        }
        EnrollCommand::Totp { label, code: None } => {
            let (record, uri) = ctx.appliance.enroll_totp(&ctx.caller, &label).await?;
            ctx.notice(&format!(
                "Scan this with your authenticator app, then run `enroll totp --code CODE` with \
                 the code it shows:\n\n{}\n{uri}\n",
                terminal_qr(&uri)
            ));
            Ok(to_value(&EnrolledTotp {
                authenticator: record,
                otpauth_uri: uri,
                note: "The secret is shown this once. Confirm it with `enroll totp --code CODE`.",
            }))
        }
        EnrollCommand::Totp {
            code: Some(code), ..
        } => Ok(to_value(
            &ctx.appliance.confirm_totp(&ctx.caller, &code).await?,
        )),
    }
}

pub fn list(ctx: &Context) -> Result<Value, Error> {
    let authenticators = ctx.appliance.authenticators(&ctx.caller)?;
    Ok(to_value(&AuthenticatorList { authenticators }))
}

pub async fn run(command: AuthenticatorCommand, ctx: &Context) -> Result<Value, Error> {
    match command {
        AuthenticatorCommand::Remove { id } => Ok(to_value(
            &ctx.appliance.remove_authenticator(&ctx.caller, &id).await?,
        )),
        AuthenticatorCommand::Reopen { id } => Ok(to_value(
            &ctx.appliance.reopen_totp(&ctx.caller, &id).await?,
        )),
    }
}

/// A QR code drawn with half-block characters, two modules per character cell, dark on light.
pub fn terminal_qr(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_qr_code_is_drawn_in_half_blocks() {
        let drawn = super::terminal_qr("otpauth://totp/sshsign:usr_x?secret=ABCDEFGH");
        let lines: Vec<&str> = drawn.lines().collect();
        assert!(lines.len() > 10, "{drawn}");
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count())
        );
        assert!(drawn.contains('▀') || drawn.contains('▄') || drawn.contains('█'));
    }
}
