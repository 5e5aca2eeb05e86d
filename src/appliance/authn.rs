//! Approvers' authenticators: passkeys (WebAuthn, user verification required) enrolled through
//! a one-time link printed over SSH, and TOTP secrets enrolled over SSH and confirmed by a first
//! code. Passkey ceremonies are bound to what they are for (an enrollment, a decision on one
//! request, a login) and held in the store (sealed) for five minutes, so that a person may start
//! on one appliance and finish on another; at most [`MAX_CEREMONIES_PER_SOURCE`] from one source
//! address at a time.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Uuid, Webauthn,
};

use super::quota::Rated;
use super::{Appliance, Caller, Error};
use crate::audit::AuditEntry;
use crate::audit::{Action, Outcome};
use crate::ids::IdKind;
use crate::net::slots::Source;
use crate::store::{
    AuthenticatorKind, AuthenticatorRecord, CeremonyRecord, EnrollmentKind, EnrollmentRecord, Store,
};
use crate::time;
use crate::views::{AuthenticatorView, EnrollmentPage, EnrollmentView};

mod totp_secrets;

/// How long an enrollment link works.
pub const ENROLLMENT_TTL: i64 = 15 * 60;
/// How long a passkey ceremony may take, seconds.
const CEREMONY_TTL: i64 = 5 * 60;
/// Ceremonies under way at once, across all users.
const MAX_CEREMONIES: usize = 10_000;
/// Ceremonies under way at once from one source (an IPv4 address or an IPv6 /64): a person
/// needs one at a time; the rest is room for an office behind one NAT.
pub const MAX_CEREMONIES_PER_SOURCE: usize = 32;

/// What a passkey ceremony was started for; the browser's answer counts only for that.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Ceremony {
    Register {
        enrollment: String,
        state: PasskeyRegistration,
    },
    Authenticate {
        purpose: String,
        state: PasskeyAuthentication,
    },
    Login {
        state: DiscoverableAuthentication,
    },
}

/// WebAuthn, and the limits on ceremonies under way. (The ceremonies are in the store, as are
/// wrong TOTP codes, so a restart forgets none of them.)
#[derive(Debug)]
pub struct Authn {
    webauthn: Webauthn,
    /// Ceremonies under way at once, across all sources.
    max_ceremonies: usize,
}

fn unreadable(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("a passkey ceremony's state: {e}"))
}

impl Authn {
    pub fn new(webauthn: Webauthn) -> Self {
        Authn {
            webauthn,
            max_ceremonies: MAX_CEREMONIES,
        }
    }

    /// Holds a ceremony started from `from` under a fresh id. A source holding its share is
    /// refused; when the table is full, the oldest ceremony of the source holding the most
    /// makes room, so sources that flood it evict their own prompts, not other people's.
    /// (Appliances holding ceremonies at the same moment may each admit one more.)
    fn hold(
        &self,
        store: &Store,
        id: String,
        from: IpAddr,
        ceremony: Ceremony,
    ) -> Result<String, Error> {
        let source = Source::of(from).key();
        let now = time::now();
        if store.live_ceremonies_from(&source, now)? >= MAX_CEREMONIES_PER_SOURCE {
            return Err(Error::OverQuota(format!(
                "at most {MAX_CEREMONIES_PER_SOURCE} passkey prompts may be open at once from \
                 one address; finish one, or wait {} minutes",
                CEREMONY_TTL / 60
            )));
        }
        if store.live_ceremonies(now)? >= self.max_ceremonies
            && let Some(oldest) = store.oldest_ceremony_of_largest_holder(now)?
        {
            store.take_ceremony(&oldest)?;
        }
        store.create(&CeremonyRecord {
            id: id.clone(),
            source,
            expires_at: now + CEREMONY_TTL,
            ceremony: serde_json::to_value(&ceremony).map_err(unreadable)?,
        })?;
        Ok(id)
    }

    /// Takes a ceremony (it is used once, whatever the outcome).
    fn take(&self, store: &Store, id: &str) -> Result<Ceremony, Error> {
        match store.take_ceremony(id)? {
            Some(held) if held.expires_at > time::now() => {
                serde_json::from_value(held.ceremony).map_err(unreadable)
            }
            _ => Err(Error::AuthenticationFailed(
                "the passkey prompt expired or was already used; try again".into(),
            )),
        }
    }
}

/// Who proved themselves, and with which authenticator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user_id: String,
    pub authenticator_id: String,
}

/// The WebAuthn user handle of a user: not their id, but derived from it.
fn user_handle(user_id: &str) -> Uuid {
    let digest = Sha256::digest(format!("sshsign webauthn user handle\0{user_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

fn sha256_hex(text: &str) -> String {
    crate::hex::encode(&Sha256::digest(text.as_bytes()))
}

fn passkey_of(record: &AuthenticatorRecord) -> Option<Passkey> {
    match &record.kind {
        AuthenticatorKind::Passkey { passkey, .. } => serde_json::from_value(passkey.clone()).ok(),
        AuthenticatorKind::Totp { .. } => None,
    }
}

fn check_label(label: &str) -> Result<(), Error> {
    if label.is_empty() || label.len() > 64 || label.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(
            "the label is 1 to 64 printable characters".into(),
        ));
    }
    Ok(())
}

fn refused(error: impl std::fmt::Display) -> Error {
    tracing::info!(%error, "a passkey was refused");
    Error::AuthenticationFailed("the passkey did not verify".into())
}

impl Appliance {
    /// A one-time link that registers a passkey for `caller`.
    pub async fn enroll_passkey(&self, caller: &Caller) -> Result<EnrollmentView, Error> {
        caller.person("enrolling an authenticator")?;
        self.quotas.charge(caller.id(), Rated::EnrollmentLinks)?;
        let token: [u8; 32] = self.token.random().await?;
        let token = URL_SAFE_NO_PAD.encode(token);
        let now = time::now();
        let enrollment = EnrollmentRecord {
            token_sha256: sha256_hex(&token),
            user_id: caller.id().to_owned(),
            kind: EnrollmentKind::Passkey,
            created_at: now,
            expires_at: now + ENROLLMENT_TTL,
            used_at: None,
            link: None,
        };
        self.record(self.entry(caller, Action::EnrollmentLink, Outcome::Issued))
            .await?;
        self.store.create(&enrollment)?;
        self.store.flush().await?;
        Ok(EnrollmentView {
            enrollment_url: format!("{}/enroll/{token}", self.settings.approval_base),
            expires_at: time::rfc3339(enrollment.expires_at),
        })
    }

    /// Whom the live enrollment an enrollment link's token names is for, and until when.
    pub fn enrollment_page(&self, token: &str) -> Result<EnrollmentPage, Error> {
        let enrollment = self.enrollment(token)?;
        Ok(EnrollmentPage {
            user_id: enrollment.user_id,
            expires_at: time::rfc3339(enrollment.expires_at),
        })
    }

    /// The live enrollment an enrollment link's token names.
    fn enrollment(&self, token: &str) -> Result<EnrollmentRecord, Error> {
        match self.store.enrollment(&sha256_hex(token))? {
            Some(e)
                if e.kind == EnrollmentKind::Passkey
                    && e.used_at.is_none()
                    && e.expires_at > time::now() =>
            {
                Ok(e)
            }
            _ => Err(Error::UnknownEnrollment),
        }
    }

    /// Starts registering a passkey through an enrollment link: the options for
    /// `navigator.credentials.create`, under a ceremony id.
    pub async fn passkey_registration_options(
        &self,
        token: &str,
        from: IpAddr,
    ) -> Result<(String, Value), Error> {
        let enrollment = self.enrollment(token)?;
        let existing: Vec<_> = self
            .store
            .authenticators_of(&enrollment.user_id)?
            .iter()
            .filter_map(passkey_of)
            .map(|p| p.cred_id().clone())
            .collect();
        let (options, state) = self
            .authn
            .webauthn
            .start_passkey_registration(
                user_handle(&enrollment.user_id),
                &enrollment.user_id,
                &format!("{} (sshsign)", enrollment.user_id),
                Some(existing),
            )
            .map_err(|e| Error::Internal(format!("starting a passkey registration: {e}")))?;
        let mut options = serde_json::to_value(options).unwrap_or_default();
        // Discoverable where the authenticator can, so the approver can log in without a name.
        options["publicKey"]["authenticatorSelection"]["residentKey"] = "preferred".into();
        let ceremony = self.ceremony_id().await?;
        let ceremony = self.authn.hold(
            &self.store,
            ceremony,
            from,
            Ceremony::Register {
                enrollment: enrollment.token_sha256,
                state,
            },
        )?;
        Ok((ceremony, options))
    }

    /// Finishes a registration: checks the browser's answer, spends the link, keeps the passkey.
    pub async fn finish_passkey_registration(
        &self,
        token: &str,
        ceremony: &str,
        credential: Value,
        label: Option<String>,
    ) -> Result<AuthenticatorView, Error> {
        let enrollment = self.enrollment(token)?;
        let Ceremony::Register {
            enrollment: bound,
            state,
        } = self.authn.take(&self.store, ceremony)?
        else {
            return Err(Error::AuthenticationFailed(
                "that prompt was for something else".into(),
            ));
        };
        if bound != enrollment.token_sha256 {
            return Err(Error::AuthenticationFailed(
                "that prompt was for another link".into(),
            ));
        }
        let label = label.unwrap_or_else(|| "passkey".to_owned());
        check_label(&label)?;
        let credential: RegisterPublicKeyCredential =
            serde_json::from_value(credential).map_err(refused)?;
        let passkey = self
            .authn
            .webauthn
            .finish_passkey_registration(&credential, &state)
            .map_err(refused)?;
        let credential_id = URL_SAFE_NO_PAD.encode(passkey.cred_id());
        if self.store.passkey_by_credential(&credential_id)?.is_some() {
            return Err(Error::InvalidArgument(
                "this passkey is already registered".into(),
            ));
        }
        let now = time::now();
        let record = AuthenticatorRecord {
            id: self.new_id(IdKind::Authenticator).await?,
            user_id: enrollment.user_id.clone(),
            label,
            kind: AuthenticatorKind::Passkey {
                credential_id,
                passkey: serde_json::to_value(&passkey)
                    .map_err(|e| Error::Internal(format!("a passkey as JSON: {e}")))?,
            },
            created_at: now,
            last_used_at: None,
        };
        self.record(authenticator_entry(&record, Action::AuthenticatorAdd))
            .await?;
        self.store
            .update_enrollment(&enrollment.token_sha256, |mut e| {
                if e.used_at.is_some() {
                    return Err(Error::UnknownEnrollment);
                }
                e.used_at = Some(now);
                Ok(e)
            })?;
        self.store.create(&record).map_err(|e| match e {
            crate::store::Error::Exists { .. } => {
                Error::InvalidArgument("this passkey is already registered".into())
            }
            other => other.into(),
        })?;
        self.store.flush().await?;
        Ok(AuthenticatorView::from(&record))
    }

    /// Options for `navigator.credentials.get` with the passkeys of `users`, for `purpose` only.
    pub async fn passkey_options(
        &self,
        users: &[String],
        purpose: &str,
        from: IpAddr,
    ) -> Result<(String, Value), Error> {
        let mut passkeys = Vec::new();
        for user in users {
            passkeys.extend(
                self.store
                    .authenticators_of(user)?
                    .iter()
                    .filter_map(passkey_of),
            );
        }
        if passkeys.is_empty() {
            return Err(Error::NoAuthenticator("passkey"));
        }
        let (options, state) = self
            .authn
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| Error::Internal(format!("starting a passkey authentication: {e}")))?;
        let ceremony = self.ceremony_id().await?;
        let ceremony = self.authn.hold(
            &self.store,
            ceremony,
            from,
            Ceremony::Authenticate {
                purpose: purpose.to_owned(),
                state,
            },
        )?;
        Ok((ceremony, serde_json::to_value(options).unwrap_or_default()))
    }

    /// Checks the browser's answer to [`Appliance::passkey_options`]; returns whose passkey
    /// it was.
    pub async fn authenticate_passkey(
        &self,
        ceremony: &str,
        purpose: &str,
        credential: Value,
    ) -> Result<Authenticated, Error> {
        let Ceremony::Authenticate {
            purpose: bound,
            state,
        } = self.authn.take(&self.store, ceremony)?
        else {
            return Err(Error::AuthenticationFailed(
                "that prompt was for something else".into(),
            ));
        };
        if bound != purpose {
            return Err(Error::AuthenticationFailed(
                "that prompt was for something else".into(),
            ));
        }
        let credential: PublicKeyCredential =
            serde_json::from_value(credential).map_err(refused)?;
        let result = self
            .authn
            .webauthn
            .finish_passkey_authentication(&credential, &state)
            .map_err(refused)?;
        self.note_passkey_use(result.cred_id(), &result).await
    }

    /// Options for a login with any discoverable passkey.
    pub async fn login_options(&self, from: IpAddr) -> Result<(String, Value), Error> {
        let (mut options, state) = self
            .authn
            .webauthn
            .start_discoverable_authentication()
            .map_err(|e| Error::Internal(format!("starting a passkey login: {e}")))?;
        // A button press, not autofill.
        options.mediation = None;
        let ceremony = self.ceremony_id().await?;
        let ceremony = self
            .authn
            .hold(&self.store, ceremony, from, Ceremony::Login { state })?;
        Ok((ceremony, serde_json::to_value(options).unwrap_or_default()))
    }

    /// Checks a login; returns whose passkey it was.
    pub async fn finish_login(
        &self,
        ceremony: &str,
        credential: Value,
    ) -> Result<Authenticated, Error> {
        let Ceremony::Login { state } = self.authn.take(&self.store, ceremony)? else {
            return Err(Error::AuthenticationFailed(
                "that prompt was for something else".into(),
            ));
        };
        let credential: PublicKeyCredential =
            serde_json::from_value(credential).map_err(refused)?;
        let (handle, credential_id) = self
            .authn
            .webauthn
            .identify_discoverable_authentication(&credential)
            .map_err(refused)?;
        let record = self
            .store
            .passkey_by_credential(&URL_SAFE_NO_PAD.encode(credential_id))?
            .filter(|r| user_handle(&r.user_id) == handle)
            .ok_or_else(|| refused("unknown credential"))?;
        let passkey = passkey_of(&record).ok_or_else(|| refused("not a passkey"))?;
        let result = self
            .authn
            .webauthn
            .finish_discoverable_authentication_v2(&credential, state, &passkey)
            .map_err(refused)?;
        self.note_passkey_use(result.cred_id(), &result).await
    }

    /// Stores a passkey's new counter and last use; returns whose it is.
    async fn note_passkey_use(
        &self,
        credential_id: &[u8],
        result: &webauthn_rs::prelude::AuthenticationResult,
    ) -> Result<Authenticated, Error> {
        let record = self
            .store
            .passkey_by_credential(&URL_SAFE_NO_PAD.encode(credential_id))?
            .ok_or_else(|| refused("the passkey was removed"))?;
        let now = time::now();
        let updated = self.store.update_authenticator(&record.id, |mut r| {
            if let AuthenticatorKind::Passkey { passkey, .. } = &mut r.kind
                && let Ok(mut current) = serde_json::from_value::<Passkey>(passkey.clone())
            {
                current.update_credential(result);
                *passkey = serde_json::to_value(&current).unwrap_or_default();
            }
            r.last_used_at = Some(now);
            Ok::<_, Error>(r)
        })?;
        self.store.flush().await?;
        Ok(Authenticated {
            user_id: updated.user_id,
            authenticator_id: updated.id,
        })
    }

    /// `caller`'s authenticators.
    pub fn authenticators(&self, caller: &Caller) -> Result<Vec<AuthenticatorView>, Error> {
        self.authenticators_of(caller.id())
    }

    /// The authenticators of `user`, a logged-in browser's user.
    pub fn authenticators_of(&self, user: &str) -> Result<Vec<AuthenticatorView>, Error> {
        let records = self.store.authenticators_of(user)?;
        Ok(records.iter().map(AuthenticatorView::from).collect())
    }

    /// Removes one of `caller`'s authenticators.
    pub async fn remove_authenticator(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<AuthenticatorView, Error> {
        caller.person("removing an authenticator")?;
        let record = match self.store.authenticator(id)? {
            Some(r) if r.user_id == caller.id() => r,
            _ => return Err(Error::UnknownAuthenticator(id.to_owned())),
        };
        self.record(authenticator_entry(&record, Action::AuthenticatorRemove))
            .await?;
        self.store.remove_authenticator(&record)?;
        self.store.flush().await?;
        Ok(AuthenticatorView::from(&record))
    }

    async fn ceremony_id(&self) -> Result<String, Error> {
        let random: [u8; 16] = self.token.random().await?;
        Ok(URL_SAFE_NO_PAD.encode(random))
    }
}

fn authenticator_entry(record: &AuthenticatorRecord, action: Action) -> AuditEntry {
    AuditEntry {
        time: time::now(),
        action,
        result: Outcome::Done,
        actor: record.user_id.clone(),
        actor_key: format!("{}:{}", record.kind_name(), record.id),
        readers: vec![record.user_id.clone()],
        reason: Some(record.label.clone()),
        ..AuditEntry::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(authn: &Authn) -> Ceremony {
        let (_, state) = authn.webauthn.start_discoverable_authentication().unwrap();
        Ceremony::Login { state }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = [7u8; 32];
        store.unseal_with(crate::seal::Sealer::new(&key, &crate::seal::check_value(&key)).unwrap());
        (dir, store)
    }

    fn held_from(store: &Store, ip: IpAddr) -> usize {
        store
            .live_ceremonies_from(&Source::of(ip).key(), time::now())
            .unwrap()
    }

    #[test]
    fn a_full_table_makes_room_from_the_source_holding_most() {
        let (_dir, store) = store();
        let mut authn = Authn::new(super::super::webauthn("http://localhost:8443").unwrap());
        authn.max_ceremonies = 4 * MAX_CEREMONIES_PER_SOURCE;
        let flooder = IpAddr::from([192, 0, 2, 1]);
        for i in 0..MAX_CEREMONIES_PER_SOURCE {
            authn
                .hold(&store, format!("f{i}"), flooder, login(&authn))
                .unwrap();
        }
        assert!(matches!(
            authn.hold(&store, "one-more".into(), flooder, login(&authn)),
            Err(Error::OverQuota(_))
        ));
        // Many other sources fill the rest of the table, a few prompts each.
        for i in 0..(authn.max_ceremonies - MAX_CEREMONIES_PER_SOURCE) as u32 {
            let other = IpAddr::from((0x0a00_0000 + i / 4).to_be_bytes());
            authn
                .hold(&store, format!("o{i}"), other, login(&authn))
                .unwrap();
        }
        // A newcomer still gets a prompt: the flooder's oldest makes room.
        let newcomer = IpAddr::from([198, 51, 100, 7]);
        authn
            .hold(&store, "new".into(), newcomer, login(&authn))
            .unwrap();
        assert_eq!(held_from(&store, newcomer), 1);
        assert_eq!(held_from(&store, flooder), MAX_CEREMONIES_PER_SOURCE - 1);
        assert!(authn.take(&store, "f0").is_err(), "the oldest was evicted");
        // Taken once: by whichever appliance gets there first.
        assert!(matches!(
            authn.take(&store, "new"),
            Ok(Ceremony::Login { .. })
        ));
        assert!(authn.take(&store, "new").is_err());
        assert_eq!(
            store.live_ceremonies(time::now()).unwrap(),
            authn.max_ceremonies - 1
        );
    }

    #[test]
    fn expired_ceremonies_are_refused_and_swept() {
        let (_dir, store) = store();
        let authn = Authn::new(super::super::webauthn("http://localhost:8443").unwrap());
        let from = IpAddr::from([192, 0, 2, 9]);
        authn
            .hold(&store, "live".into(), from, login(&authn))
            .unwrap();
        let now = time::now();
        store
            .create(&CeremonyRecord {
                id: "stale".into(),
                source: Source::of(from).key(),
                expires_at: now - 1,
                ceremony: serde_json::to_value(login(&authn)).unwrap(),
            })
            .unwrap();
        assert_eq!(held_from(&store, from), 1, "the stale one does not count");
        assert_eq!(store.remove_expired_ceremonies(now, 100).unwrap(), 1);
        assert!(authn.take(&store, "stale").is_err());
        assert!(authn.take(&store, "live").is_ok());
    }
}
