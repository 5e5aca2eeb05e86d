//! Several SSH keys for one identity, each joined with proof that its holder has it.
//!
//! `link start` (from a key the identity already has) issues a one-time code; a connection made
//! with the new key that runs `link finish --code` within [`LINK_TTL`] joins it. The SSH
//! handshake of that connection is the proof of possession: the client signed the session with
//! the new key, whatever its type. A key that already identifies anyone is never moved: an
//! identity is never merged into another. `unlink` removes a key (never the last). Every step is
//! an audit entry, written before the change.
//!
//! A key linked with `--agent` is an agent's: it signs, lists and asks like any key of the
//! identity, but it may not decide requests over SSH (`approve`, `deny`), nor change who the
//! identity is (`link`, `unlink`), nor its approvers and authenticators. Those are a person's,
//! with a person's key or on a request's page with a passkey.

use super::quota::Rated;
use super::{Appliance, Caller, Error};
use crate::audit::{Action, Outcome};
use crate::store::{EnrollmentKind, EnrollmentRecord, LinkTerms, SshKeyRecord};
use crate::time;
use crate::views::{LinkStarted, LinkedKey};

/// How long a link code works.
pub const LINK_TTL: i64 = 10 * 60;
/// The most SSH keys one identity may have.
pub const MAX_SSH_KEYS: usize = 32;
/// The longest label a linked key may have.
pub const MAX_KEY_LABEL: usize = 64;

/// A code as typed: `abcd-efgh-...`, any case, dashes and spaces ignored.
fn normalized(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn code_hash(code: &str) -> String {
    use sha2::{Digest as _, Sha256};
    crate::hex::encode(&Sha256::digest(normalized(code).as_bytes()))
}

/// `link finish` from a key that already identifies `user`: keys are never moved.
pub fn already_identifies(fingerprint: &str, user: &str) -> Error {
    Error::Forbidden(format!(
        "this SSH key ({fingerprint}) already identifies {user}; an identity is never merged \
         into another: link a key that has not connected before"
    ))
}

impl Caller {
    /// Refuses what only a person's key may do.
    pub fn person(&self, what: &str) -> Result<(), Error> {
        if self.agent {
            return Err(Error::Forbidden(format!(
                "this SSH key is an agent's: {what} needs a person's key of this identity (or, \
                 for a decision, the request's page with a passkey)"
            )));
        }
        Ok(())
    }
}

impl Appliance {
    /// `link start`: a one-time code that joins the next new key to run `link finish --code`
    /// with it to the caller's identity.
    pub async fn link_start(
        &self,
        caller: &Caller,
        agent: bool,
        label: Option<String>,
    ) -> Result<LinkStarted, Error> {
        caller.person("linking a key")?;
        if let Some(label) = &label
            && (label.is_empty()
                || label.len() > MAX_KEY_LABEL
                || label.chars().any(char::is_control))
        {
            return Err(Error::Invalid {
                field: "label",
                reason: format!("is 1 to {MAX_KEY_LABEL} bytes of printable text"),
            });
        }
        let held = self
            .store
            .user(caller.id())?
            .map_or(caller.user.ssh_keys.len(), |user| user.ssh_keys.len());
        if held >= MAX_SSH_KEYS {
            return Err(Error::OverQuota(format!(
                "quota reached: at most {MAX_SSH_KEYS} SSH keys per user; unlink one first"
            )));
        }
        self.quotas.charge(caller.id(), Rated::EnrollmentLinks)?;
        let random: [u8; 16] = self.token.random().await?;
        let code = crate::ids::base32(&random[..15])
            .as_bytes()
            .chunks(4)
            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
            .collect::<Vec<_>>()
            .join("-");
        let now = time::now();
        let link = EnrollmentRecord {
            token_sha256: code_hash(&code),
            user_id: caller.id().to_owned(),
            kind: EnrollmentKind::SshKey,
            created_at: now,
            expires_at: now + LINK_TTL,
            used_at: None,
            link: Some(LinkTerms { agent, label }),
        };
        let mut entry = self.entry(caller, Action::SshKeyLinkStart, Outcome::Issued);
        entry.reason = Some(if agent { "agent" } else { "person" }.to_owned());
        self.record(entry).await?;
        self.store.create(&link)?;
        self.store.flush().await?;
        Ok(LinkStarted {
            command: format!("link finish --code {code}"),
            code,
            agent,
            expires_at: time::rfc3339(link.expires_at),
        })
    }

    /// `link finish --code` from a connection made with `key`, a key no identity has: joins it
    /// to the identity that issued the code. The SSH handshake proved the connection holds it.
    pub async fn link_finish(&self, key: &ssh_key::PublicKey, code: &str) -> Result<Caller, Error> {
        let fingerprint = key.fingerprint(ssh_key::HashAlg::Sha256).to_string();
        if let Some(known) = self.store.ssh_key(&fingerprint)? {
            return Err(already_identifies(&fingerprint, &known.user_id));
        }
        let unknown = || {
            Error::Forbidden(
                "this link code is unknown, used or expired; run link start again with a key of \
                 the identity"
                    .into(),
            )
        };
        let hash = code_hash(code);
        let link = match self.store.enrollment(&hash)? {
            Some(link)
                if link.kind == EnrollmentKind::SshKey
                    && link.used_at.is_none()
                    && link.expires_at > time::now() =>
            {
                link
            }
            _ => return Err(unknown()),
        };
        let terms = link.link.clone().unwrap_or(LinkTerms {
            agent: false,
            label: None,
        });
        let user = self.store.user(&link.user_id)?.ok_or_else(|| {
            Error::Internal(format!("link code of missing user {}", link.user_id))
        })?;
        let caller = Caller {
            user,
            fingerprint: fingerprint.clone(),
            agent: terms.agent,
        };
        // One use: whoever marks it used first links.
        self.store.update_enrollment(&hash, |mut current| {
            if current.used_at.is_some() {
                return Err(unknown());
            }
            current.used_at = Some(time::now());
            Ok(current)
        })?;
        let mut entry = self.entry(&caller, Action::SshKeyLink, Outcome::Done);
        entry.subject_key = Some(fingerprint.clone());
        entry.reason = Some(if terms.agent { "agent" } else { "person" }.to_owned());
        self.record(entry).await?;
        let record = SshKeyRecord {
            fingerprint: fingerprint.clone(),
            user_id: link.user_id.clone(),
            public_key: key
                .to_openssh()
                .map_err(|e| Error::Internal(e.to_string()))?,
            registered_at: time::now(),
            agent: terms.agent,
            label: terms.label,
        };
        let user = match self.store.link_ssh_key(&record) {
            Ok(user) => user,
            Err(crate::store::Error::Exists { .. }) => {
                return Err(Error::Forbidden(format!(
                    "this SSH key ({fingerprint}) connected elsewhere meanwhile and identifies \
                     someone; link another key"
                )));
            }
            Err(other) => return Err(other.into()),
        };
        self.store.flush().await?;
        tracing::info!(user = %user.user_id, %fingerprint, agent = terms.agent, "SSH key linked");
        Ok(Caller {
            user,
            fingerprint,
            agent: terms.agent,
        })
    }

    /// `unlink --fingerprint`: the key no longer identifies the caller (never their last key).
    pub async fn unlink(&self, caller: &Caller, fingerprint: &str) -> Result<LinkedKey, Error> {
        caller.person("unlinking a key")?;
        let theirs = self
            .store
            .ssh_key(fingerprint)?
            .filter(|key| key.user_id == caller.id());
        if theirs.is_none() {
            return Err(Error::InvalidArgument(format!(
                "{fingerprint} is not one of your SSH keys (whoami lists them)"
            )));
        }
        let current = self.store.user(caller.id())?;
        if current.is_none_or(|user| user.ssh_keys.len() < 2) {
            return Err(Error::InvalidArgument(
                "this is your only SSH key: link another before you unlink it".into(),
            ));
        }
        let mut entry = self.entry(caller, Action::SshKeyUnlink, Outcome::Done);
        entry.subject_key = Some(fingerprint.to_owned());
        self.record(entry).await?;
        let removed = self
            .store
            .unlink_ssh_key(caller.id(), fingerprint)?
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "the key was unlinked meanwhile, or it is your only one".into(),
                )
            })?;
        self.store.flush().await?;
        tracing::info!(user = %caller.id(), %fingerprint, "SSH key unlinked");
        Ok(LinkedKey::new(&removed, &caller.fingerprint))
    }

    /// Refuses a caller whose key was unlinked since its connection authenticated: an unlinked
    /// key stops acting for the identity at once, on connections already open too.
    pub fn check_still_linked(&self, caller: &Caller) -> Result<(), Error> {
        match self.store.ssh_key(&caller.fingerprint)? {
            Some(key) if key.user_id == caller.id() => Ok(()),
            _ => Err(Error::Forbidden(
                "this SSH key was unlinked from its identity; connect again to use it as a key \
                 of its own"
                    .into(),
            )),
        }
    }

    /// The SSH keys of the caller's identity, in the order they joined.
    pub fn linked_keys(&self, caller: &Caller) -> Result<Vec<LinkedKey>, Error> {
        let user = self.store.user(caller.id())?.unwrap_or(caller.user.clone());
        let mut keys = Vec::new();
        for fingerprint in &user.ssh_keys {
            if let Some(key) = self.store.ssh_key(fingerprint)? {
                keys.push(LinkedKey::new(&key, &caller.fingerprint));
            }
        }
        Ok(keys)
    }
}
