//! TOTP secrets: enrolled over SSH and confirmed by a first code, checked against durable
//! budgets of wrong codes (per request, per secret, per lifetime), reopened by their owner.

use serde_json::Value;

use super::{authenticator_entry, check_label};
use crate::appliance::{Appliance, Authenticated, Caller, Error};
use crate::approval::totp;
use crate::audit::{Action, Outcome};
use crate::ids::IdKind;
use crate::store::{
    AuthenticatorKind, AuthenticatorRecord, TOTP_FAILURE_BUDGET, TOTP_LIFETIME_FAILURES, TotpState,
};
use crate::time;
use crate::views::AuthenticatorView;

/// A stored TOTP secret's bytes; one that does not decode is refused, never checked as empty
/// (an empty HMAC key would accept codes anyone can compute).
fn secret_bytes(secret_hex: &str) -> Result<Vec<u8>, Error> {
    crate::hex::decode(secret_hex)
        .filter(|secret| !secret.is_empty())
        .ok_or_else(|| Error::Internal("a stored TOTP secret is not hex".into()))
}

impl Appliance {
    /// A new TOTP secret for `caller`, shown once as an `otpauth://` URI; it works once
    /// [`Appliance::confirm_totp`] has seen a code from it, and then replaces any secret
    /// confirmed before it (one secret per user, so a guess is tried against one secret). An
    /// unconfirmed one is replaced.
    pub async fn enroll_totp(
        &self,
        caller: &Caller,
        label: &str,
    ) -> Result<(AuthenticatorView, String), Error> {
        caller.person("enrolling an authenticator")?;
        check_label(label)?;
        self.quotas
            .charge(caller.id(), super::super::quota::Rated::EnrollmentLinks)?;
        for old in self.store.authenticators_of(caller.id())? {
            if old.totp_state() == Some(TotpState::Unconfirmed) {
                self.store.remove_authenticator(&old)?;
            }
        }
        let secret: [u8; 20] = self.token.random().await?;
        let record = AuthenticatorRecord {
            id: self.new_id(IdKind::Authenticator).await?,
            user_id: caller.id().to_owned(),
            label: label.to_owned(),
            kind: AuthenticatorKind::Totp {
                secret_hex: crate::hex::encode(&secret),
                confirmed: false,
                last_step: 0,
                failures: 0,
                failures_total: 0,
                closed_at: None,
            },
            created_at: time::now(),
            last_used_at: None,
        };
        self.store.create(&record)?;
        self.store.flush().await?;
        let issuer = self
            .settings
            .approval_base
            .split_once("://")
            .map_or("sshsign", |(_, host)| host);
        let uri = totp::otpauth_uri(&format!("sshsign {issuer}"), caller.id(), &secret);
        Ok((AuthenticatorView::from(&record), uri))
    }

    /// Confirms `caller`'s new TOTP secret with a first valid code; it replaces the secret
    /// confirmed before it. Both changes are in the audit log before they take effect.
    pub async fn confirm_totp(
        &self,
        caller: &Caller,
        code: &str,
    ) -> Result<AuthenticatorView, Error> {
        caller.person("enrolling an authenticator")?;
        let mine = self.store.authenticators_of(caller.id())?;
        let pending = mine
            .iter()
            .find(|a| a.totp_state() == Some(TotpState::Unconfirmed))
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "no TOTP enrollment to confirm: run `enroll totp` first".into(),
                )
            })?;
        let AuthenticatorKind::Totp { secret_hex, .. } = &pending.kind else {
            return Err(Error::Internal("a TOTP enrollment of another kind".into()));
        };
        let secret = secret_bytes(secret_hex)?;
        let now = time::now();
        let step = totp::check(&secret, code, now, 0).ok_or_else(|| {
            Error::AuthenticationFailed("the code is wrong, or was already used".into())
        })?;
        let replaced: Vec<&AuthenticatorRecord> = mine
            .iter()
            .filter(|a| a.id != pending.id && a.totp_state().is_some())
            .collect();
        for old in &replaced {
            let mut entry = authenticator_entry(old, Action::AuthenticatorRemove);
            entry.reason = Some(format!("{}: replaced by {}", old.label, pending.id));
            self.record(entry).await?;
        }
        let mut confirmed = pending.clone();
        if let AuthenticatorKind::Totp {
            confirmed: flag,
            last_step,
            ..
        } = &mut confirmed.kind
        {
            *flag = true;
            *last_step = step;
        }
        confirmed.last_used_at = Some(now);
        self.record(authenticator_entry(&confirmed, Action::AuthenticatorAdd))
            .await?;
        self.store.update_authenticator(&pending.id, |r| {
            if r.totp_state() != Some(TotpState::Unconfirmed) {
                return Err(Error::InvalidArgument(
                    "that TOTP enrollment was confirmed or replaced meanwhile".into(),
                ));
            }
            Ok(confirmed.clone())
        })?;
        for old in replaced {
            self.store.remove_authenticator(old)?;
        }
        self.store.flush().await?;
        Ok(AuthenticatorView::from(&confirmed))
    }

    /// The TOTP secret decisions are checked against: `user`'s confirmed one (the newest, for a
    /// user who confirmed several before secrets replaced each other).
    fn totp_of(&self, user: &str) -> Result<AuthenticatorRecord, Error> {
        self.store
            .authenticators_of(user)?
            .into_iter()
            .rev()
            .find(|a| {
                matches!(
                    a.totp_state(),
                    Some(TotpState::Active | TotpState::Closed | TotpState::Retired)
                )
            })
            .ok_or(Error::NoAuthenticator("totp"))
    }

    /// Checks a TOTP code from `approver`, entered on request `request`'s page by `client`. A
    /// right code spends its step; a wrong one is counted against the secret, durably, before
    /// the answer, and audited for the approver and `readers`; past the budget the secret closes
    /// (and past its lifetime budget it retires) until its owner acts.
    pub(in crate::appliance) async fn authenticate_totp(
        &self,
        approver: &str,
        code: &str,
        request: &str,
        client: &str,
        readers: &[String],
    ) -> Result<Authenticated, Error> {
        let record = self.totp_of(approver)?;
        let now = time::now();
        let right = std::cell::Cell::new(false);
        let updated = self.store.update_authenticator(&record.id, |mut r| {
            let state = r.totp_state();
            let AuthenticatorKind::Totp {
                secret_hex,
                last_step,
                failures,
                failures_total,
                closed_at,
                ..
            } = &mut r.kind
            else {
                return Err(Error::NoAuthenticator("totp"));
            };
            match state {
                Some(TotpState::Retired) => return Err(Error::TotpRetired(approver.to_owned())),
                Some(TotpState::Closed) => {
                    return Err(Error::TotpClosed {
                        approver: approver.to_owned(),
                        authenticator: record.id.clone(),
                    });
                }
                _ => {}
            }
            let secret = secret_bytes(secret_hex)?;
            match totp::check(&secret, code, now, *last_step) {
                Some(step) => {
                    right.set(true);
                    *last_step = step;
                    r.last_used_at = Some(now);
                }
                None => {
                    right.set(false);
                    *failures += 1;
                    *failures_total += 1;
                    if *failures >= TOTP_FAILURE_BUDGET || *failures_total >= TOTP_LIFETIME_FAILURES
                    {
                        *closed_at = Some(now);
                    }
                }
            }
            Ok(r)
        })?;
        self.store.flush().await?;
        if right.get() {
            return Ok(Authenticated {
                user_id: updated.user_id,
                authenticator_id: updated.id,
            });
        }
        let AuthenticatorKind::Totp {
            failures,
            failures_total,
            ..
        } = updated.kind
        else {
            return Err(Error::NoAuthenticator("totp"));
        };
        let mut entry = authenticator_entry(&updated, Action::TotpFailed);
        entry.actor = format!("web:{client}");
        entry.result = Outcome::Refused;
        entry.about_request(request);
        entry.readers.extend(readers.iter().cloned());
        entry.reason = Some(format!(
            "wrong code on {request} from {client}: {failures} of {TOTP_FAILURE_BUDGET} before \
             it closes, {failures_total} of {TOTP_LIFETIME_FAILURES} in its life"
        ));
        self.record(entry).await?;
        match updated.totp_state() {
            Some(TotpState::Retired) => Err(Error::TotpRetired(approver.to_owned())),
            Some(TotpState::Closed) => Err(Error::TotpClosed {
                approver: approver.to_owned(),
                authenticator: updated.id,
            }),
            _ => Err(Error::AuthenticationFailed(format!(
                "the code is wrong, or was already used ({} more wrong codes close TOTP for \
                 this approver)",
                TOTP_FAILURE_BUDGET - failures
            ))),
        }
    }

    /// The passkey prompt with which logged-in `user` reopens their TOTP secret `id`.
    pub async fn reopen_totp_options(
        &self,
        user: &str,
        id: &str,
        from: std::net::IpAddr,
    ) -> Result<(String, Value), Error> {
        match self.store.authenticator(id)? {
            Some(r) if r.user_id == user && r.totp_state() == Some(TotpState::Closed) => {}
            _ => return Err(Error::UnknownAuthenticator(id.to_owned())),
        }
        self.passkey_options(&[user.to_owned()], &format!("reopen-totp:{id}"), from)
            .await
    }

    /// Reopens logged-in `user`'s TOTP secret `id`, proved by a passkey assertion made for it.
    pub async fn reopen_totp_with_passkey(
        &self,
        user: &str,
        id: &str,
        ceremony: &str,
        credential: Value,
    ) -> Result<AuthenticatorView, Error> {
        let who = self
            .authenticate_passkey(ceremony, &format!("reopen-totp:{id}"), credential)
            .await?;
        if who.user_id != user {
            return Err(Error::AuthenticationFailed(
                "that passkey is someone else's".into(),
            ));
        }
        let record = self
            .store
            .user(user)?
            .ok_or_else(|| Error::Internal(format!("session of missing user {user}")))?;
        let caller = Caller {
            user: record,
            fingerprint: format!("passkey:{}", who.authenticator_id),
            agent: false,
        };
        self.reopen_totp(&caller, id).await
    }

    /// Reopens `caller`'s TOTP secret that wrong codes closed (not one retired for good).
    pub async fn reopen_totp(&self, caller: &Caller, id: &str) -> Result<AuthenticatorView, Error> {
        caller.person("reopening an authenticator")?;
        let record = match self.store.authenticator(id)? {
            Some(r) if r.user_id == caller.id() && r.totp_state().is_some() => r,
            _ => return Err(Error::UnknownAuthenticator(id.to_owned())),
        };
        let check = |r: &AuthenticatorRecord| match r.totp_state() {
            Some(TotpState::Closed) => Ok(()),
            Some(TotpState::Retired) => Err(Error::TotpRetired(caller.id().to_owned())),
            _ => Err(Error::InvalidArgument(format!(
                "authenticator {id} is not closed"
            ))),
        };
        check(&record)?;
        let mut entry = self.entry(caller, Action::AuthenticatorReopen, Outcome::Done);
        entry.reason = Some(id.to_owned());
        self.record(entry).await?;
        let reopened = self.store.update_authenticator(id, |mut r| {
            check(&r)?;
            if let AuthenticatorKind::Totp {
                failures,
                closed_at,
                ..
            } = &mut r.kind
            {
                *failures = 0;
                *closed_at = None;
            }
            Ok::<_, Error>(r)
        })?;
        self.store.flush().await?;
        Ok(AuthenticatorView::from(&reopened))
    }
}
