//! Consent to be asked: a user is named an approver, or granted an authorization, only by
//! someone they accepted (`approvers allow --from ...`); their own API keys and keys need no
//! acceptance. Anything else is refused before it is stored, so a stranger's text never reaches
//! a user's lists or their notification channel.

use super::{Appliance, Caller, Error};
use crate::audit::{Action, Outcome};
use crate::ids::IdKind;
use crate::store::ConsentRecord;
use crate::time;
use crate::views::ConsentView;

impl Appliance {
    /// A user id from a `usr_` id or an SSH key fingerprint of a registered user.
    pub(super) fn user_named(&self, name: &str) -> Result<String, Error> {
        if IdKind::User.matches(name) {
            return match self.store.user(name)? {
                Some(user) => Ok(user.user_id),
                None => Err(Error::UnknownUser(name.to_owned())),
            };
        }
        match self.store.ssh_key(name)? {
            Some(key) => Ok(key.user_id),
            None => Err(Error::UnknownUser(name.to_owned())),
        }
    }

    /// Refuses unless `user` accepts requests and grants from `from` (or is `from`).
    pub(super) fn check_consent(&self, user: &str, from: &str) -> Result<(), Error> {
        if user == from || self.store.consent(user, from)?.is_some() {
            return Ok(());
        }
        Err(Error::NotAccepted {
            who: user.to_owned(),
            from: from.to_owned(),
        })
    }

    /// `caller` accepts requests and grants from `from` (a `usr_` id or an SSH fingerprint).
    pub async fn allow_requester(&self, caller: &Caller, from: &str) -> Result<ConsentView, Error> {
        caller.person("choosing whom you accept requests from")?;
        let user = self.user_named(from)?;
        if user == caller.id() {
            return Err(Error::InvalidArgument(
                "your own keys and API keys need no acceptance".into(),
            ));
        }
        let consent = ConsentRecord {
            user_id: caller.id().to_owned(),
            from: user.clone(),
            named_as: from.to_owned(),
            created_at: time::now(),
        };
        let mut entry = self.entry(caller, Action::ConsentAllow, Outcome::Done);
        entry.readers.push(user);
        entry.reason = Some(consent.from.clone());
        self.record(entry).await?;
        self.store.put_consent(&consent)?;
        self.store.flush().await?;
        Ok(ConsentView::from(&consent))
    }

    /// Whom `caller` accepts requests and grants from.
    pub fn consents(&self, caller: &Caller) -> Result<Vec<ConsentView>, Error> {
        let consents = self.store.consents_of(caller.id())?;
        Ok(consents.iter().map(ConsentView::from).collect())
    }

    /// `caller` stops accepting new requests and grants from `from`; what they accepted before
    /// stays until they revoke or decide it.
    pub async fn revoke_requester(&self, caller: &Caller, from: &str) -> Result<String, Error> {
        caller.person("choosing whom you accept requests from")?;
        let user = self.user_named(from)?;
        if self.store.consent(caller.id(), &user)?.is_none() {
            return Err(Error::InvalidArgument(format!(
                "you do not accept requests from {from}"
            )));
        }
        let mut entry = self.entry(caller, Action::ConsentRevoke, Outcome::Done);
        entry.readers.push(user.clone());
        entry.reason = Some(user.clone());
        self.record(entry).await?;
        self.store.remove_consent(caller.id(), &user)?;
        self.store.flush().await?;
        Ok(user)
    }
}
