//! Several tokens behind one [`Hsm`]: how an appliance goes past one device's rate (a YubiHSM 2
//! signs about 8 times a second) and keeps signing when one device fails.
//!
//! The first token is the **primary**: it holds the appliance's own keys and the seal key, and
//! draws random bytes. New signing keys are **placed in turn** (round robin) among the tokens,
//! skipping a token that is failing or full; each key signs on the token that made it, found by
//! its id (a token's own id, so a key keeps its id whichever pool it is in; the pool checks that
//! no other token uses an id it hands out). A token whose calls fail is marked failing, and
//! [`Hsm::health`] reports each token, so `/healthz` names the one that is down while the others
//! go on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::{
    DataKey, Error, Hsm, KeyAttributes, KeyExport, ObjectId, Result, TokenDescription, TokenHealth,
    TokenKey, WrappedKey, WrappedKind,
};

/// How many times a placement is tried before giving up (a token's id can clash with another's).
const PLACEMENT_ATTEMPTS: usize = 4;
/// Ids at least this long are random enough never to clash across tokens.
const LONG_ID: usize = 8;

/// Tokens used as one.
pub struct TokenPool {
    members: Vec<Member>,
    next: AtomicUsize,
    /// Which token holds each key found or made so far.
    placed: RwLock<HashMap<ObjectId, usize>>,
}

struct Member {
    hsm: Arc<dyn Hsm>,
    /// The last failure, until a call succeeds again.
    failing: Mutex<Option<String>>,
}

impl std::fmt::Debug for TokenPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPool")
            .field(
                "members",
                &self.members.iter().map(|m| &m.hsm).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Errors that say nothing about the token's health: the request was wrong, not the device.
fn is_the_callers(error: &Error) -> bool {
    matches!(
        error,
        Error::KeyNotFound(_)
            | Error::MessageTooLong { .. }
            | Error::TokenFull { .. }
            | Error::Label(_)
    )
}

impl Member {
    /// Runs `f`, keeping the member's health up to date.
    fn call<T>(&self, f: impl FnOnce(&dyn Hsm) -> Result<T>) -> Result<T> {
        let result = f(self.hsm.as_ref());
        let mut failing = self
            .failing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &result {
            Ok(_) => *failing = None,
            Err(error) if is_the_callers(error) => {}
            Err(error) => {
                if failing.is_none() {
                    let token = self.hsm.describe();
                    tracing::error!(label = %token.label, serial = %token.serial, %error, "a token of the pool is failing");
                }
                *failing = Some(error.to_string());
            }
        }
        result
    }

    fn is_failing(&self) -> bool {
        self.failing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some()
    }
}

impl TokenPool {
    /// A pool of `tokens`, the first being the primary. At least one.
    pub fn new(tokens: Vec<Arc<dyn Hsm>>) -> Result<Self> {
        if tokens.is_empty() {
            return Err(Error::Worker("a token pool needs a token".to_owned()));
        }
        Ok(TokenPool {
            members: tokens
                .into_iter()
                .map(|hsm| Member {
                    hsm,
                    failing: Mutex::new(None),
                })
                .collect(),
            next: AtomicUsize::new(0),
            placed: RwLock::new(HashMap::new()),
        })
    }

    fn first(&self) -> &Member {
        &self.members[0]
    }

    fn remember(&self, id: &ObjectId, member: usize) {
        self.placed
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id.clone(), member);
    }

    /// The token that holds `id`: the one remembered, else the first that has it.
    fn holder(&self, id: &ObjectId) -> Result<Option<usize>> {
        let known = self
            .placed
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(id)
            .copied();
        if known.is_some() {
            return Ok(known);
        }
        let mut unreachable = None;
        let mut holders = Vec::new();
        for (n, member) in self.members.iter().enumerate() {
            match member.call(|hsm| hsm.find(id)) {
                Ok(Some(_)) => holders.push(n),
                Ok(None) => {}
                Err(error) => unreachable = Some(error),
            }
        }
        match (holders.as_slice(), unreachable) {
            // Placement keeps ids unique across the pool (see `unique`), so a token that does
            // not answer cannot hold this id too.
            ([n], _) => {
                self.remember(id, *n);
                Ok(Some(*n))
            }
            // Never guess: signing with the other token's key would sign with someone else's.
            ([_, _, ..], _) => Err(Error::Worker(format!(
                "the key {id} is on {} tokens of the pool; remove the copies that are not the \
                 appliance's",
                holders.len()
            ))),
            // A key on a token that does not answer is not "not found".
            ([], Some(error)) => Err(error),
            ([], None) => Ok(None),
        }
    }

    fn on_holder<T>(&self, id: &ObjectId, f: impl FnOnce(&dyn Hsm) -> Result<T>) -> Result<T> {
        match self.holder(id)? {
            Some(n) => self.members[n].call(f),
            None => Err(Error::KeyNotFound(id.clone())),
        }
    }

    /// Every token's answer to `f`, skipping (and marking) tokens that fail; fails only when
    /// every token does.
    fn gather<T>(&self, f: impl Fn(&dyn Hsm) -> Result<Vec<T>>) -> Result<Vec<T>> {
        let mut all = Vec::new();
        let mut last = None;
        let mut answered = false;
        for member in &self.members {
            match member.call(&f) {
                Ok(found) => {
                    answered = true;
                    all.extend(found);
                }
                Err(error) => last = Some(error),
            }
        }
        match (answered, last) {
            (false, Some(error)) => Err(error),
            _ => Ok(all),
        }
    }

    /// Makes a key on the next token in turn that answers and has room, with an id no other
    /// token uses.
    fn place(&self, label: &str) -> Result<TokenKey> {
        let count = self.members.len();
        let mut last = None;
        for _ in 0..PLACEMENT_ATTEMPTS {
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            let chosen = (0..count)
                .map(|k| (start + k) % count)
                .find(|&n| !self.members[n].is_failing());
            // All failing: try the turn's token anyway, which clears its mark if it is back.
            let n = chosen.unwrap_or(start % count);
            let member = &self.members[n];
            let key = match member.call(|hsm| hsm.generate_ed25519(label)) {
                Ok(key) => key,
                Err(error @ Error::TokenFull { .. }) => {
                    // Full: the others are tried in turn before the pool says it is full.
                    let elsewhere = (1..count)
                        .map(|k| (n + k) % count)
                        .filter(|&m| !self.members[m].is_failing())
                        .find_map(|m| {
                            self.members[m]
                                .call(|hsm| hsm.generate_ed25519(label))
                                .ok()
                                .map(|key| (m, key))
                        });
                    match elsewhere {
                        Some((m, key)) => return self.unique(m, key, label),
                        None => return Err(error),
                    }
                }
                Err(error) => {
                    last = Some(error);
                    continue;
                }
            };
            return self.unique(n, key, label);
        }
        Err(last.unwrap_or_else(|| Error::Worker("no token could make the key".to_owned())))
    }

    /// `key`, made on token `n`, if no other token uses its id; else it is destroyed and another
    /// is made (short device ids, such as YubiHSM's 16 bits, can clash across devices).
    ///
    /// A token that does not answer cannot be asked. A 16-byte random id clashes with nothing in
    /// practice, so it is kept; a short one (YubiHSM: 16 bits, a clash in a few hundred keys) is
    /// not, and the key is not made until every token answers.
    fn unique(&self, n: usize, key: TokenKey, label: &str) -> Result<TokenKey> {
        let id = &key.object_id;
        for (m, other) in self.members.iter().enumerate() {
            if m == n {
                continue;
            }
            let clash = match other.call(|hsm| hsm.find(id)) {
                Ok(found) => found.is_some(),
                Err(_) if id.as_bytes().len() >= LONG_ID => false,
                Err(error) => {
                    self.members[n].call(|hsm| hsm.destroy(id))?;
                    return Err(Error::Worker(format!(
                        "a new key's id cannot be checked against {} ({error}), and short ids \
                         can clash across tokens: try again when every token answers",
                        other.hsm.describe().label
                    )));
                }
            };
            if clash {
                self.members[n].call(|hsm| hsm.destroy(id))?;
                return self.place(label);
            }
        }
        self.remember(id, n);
        Ok(key)
    }
}

impl Hsm for TokenPool {
    fn generate_ed25519(&self, label: &str) -> Result<TokenKey> {
        self.place(label)
    }

    fn find(&self, id: &ObjectId) -> Result<Option<TokenKey>> {
        match self.holder(id)? {
            Some(n) => self.members[n].call(|hsm| hsm.find(id)),
            None => Ok(None),
        }
    }

    fn find_by_label(&self, label: &str) -> Result<Vec<TokenKey>> {
        self.gather(|hsm| hsm.find_by_label(label))
    }

    fn list(&self) -> Result<Vec<TokenKey>> {
        self.gather(|hsm| hsm.list())
    }

    fn sign(&self, id: &ObjectId, message: &[u8]) -> Result<[u8; 64]> {
        self.on_holder(id, |hsm| hsm.sign(id, message))
    }

    fn destroy(&self, id: &ObjectId) -> Result<()> {
        match self.holder(id)? {
            Some(n) => {
                self.members[n].call(|hsm| hsm.destroy(id))?;
                self.placed
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .remove(id);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn generate_seal_key(&self, label: &str) -> Result<ObjectId> {
        self.first().call(|hsm| hsm.generate_seal_key(label))
    }

    fn find_seal_keys(&self, label: &str) -> Result<Vec<ObjectId>> {
        self.first().call(|hsm| hsm.find_seal_keys(label))
    }

    fn new_data_key(&self, seal: &ObjectId) -> Result<(DataKey, Vec<u8>)> {
        self.first().call(|hsm| hsm.new_data_key(seal))
    }

    fn open_data_key(&self, seal: &ObjectId, stored: &[u8]) -> Result<DataKey> {
        self.first().call(|hsm| hsm.open_data_key(seal, stored))
    }

    /// From the primary; from the next token that answers when it does not.
    fn random(&self, out: &mut [u8]) -> Result<()> {
        let mut last = None;
        for member in &self.members {
            match member.call(|hsm| hsm.random(out)) {
                Ok(()) => return Ok(()),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| Error::Worker("no token".to_owned())))
    }

    fn attributes(&self, id: &ObjectId) -> Result<KeyAttributes> {
        self.on_holder(id, |hsm| hsm.attributes(id))
    }

    /// The primary's description; `sessions` counts every token's, which sets how many token
    /// threads the appliance runs.
    fn describe(&self) -> TokenDescription {
        let mut description = self.first().hsm.describe();
        description.sessions = self.members.iter().map(|m| m.hsm.describe().sessions).sum();
        description
    }

    fn health(&self) -> Vec<TokenHealth> {
        self.members
            .iter()
            .map(|member| {
                let mut probe = [0u8; 8];
                let error = member.call(|hsm| hsm.random(&mut probe)).err();
                TokenHealth {
                    token: member.hsm.describe(),
                    error: error.map(|e| e.to_string()),
                }
            })
            .collect()
    }

    fn primary(&self) -> &dyn Hsm {
        self.members[0].hsm.as_ref()
    }

    fn attest(&self, id: &ObjectId) -> Result<crate::attestation::Attestation> {
        self.on_holder(id, |hsm| hsm.attest(id))
    }

    fn can_attest(&self) -> bool {
        self.members.iter().any(|m| m.hsm.can_attest())
    }

    fn attest_cheaply(
        &self,
        id: &ObjectId,
        asked: bool,
    ) -> Result<Option<crate::attestation::Attestation>> {
        self.on_holder(id, |hsm| hsm.attest_cheaply(id, asked))
    }

    fn retire(&self, id: &ObjectId) -> Result<()> {
        self.on_holder(id, |hsm| hsm.retire(id))
    }

    /// The wrap keys every token of the pool holds.
    fn wrap_keys(&self) -> Result<Vec<ObjectId>> {
        let mut common = self.first().call(|hsm| hsm.wrap_keys())?;
        for member in &self.members[1..] {
            let held = member.call(|hsm| hsm.wrap_keys())?;
            common.retain(|id| held.contains(id));
        }
        Ok(common)
    }

    /// Each key from the token that holds it; the seal key from the primary.
    fn wrap_key(&self, wrap: &ObjectId, kind: WrappedKind, id: &ObjectId) -> Result<Vec<u8>> {
        match kind {
            WrappedKind::Ed25519 => self.on_holder(id, |hsm| hsm.wrap_key(wrap, kind, id)),
            WrappedKind::Seal => self.first().call(|hsm| hsm.wrap_key(wrap, kind, id)),
        }
    }

    /// A restore brings every key into the primary token.
    fn unwrap_key(&self, wrap: &ObjectId, key: &WrappedKey, export: KeyExport) -> Result<()> {
        self.first().call(|hsm| hsm.unwrap_key(wrap, key, export))
    }

    fn close(&self) -> Result<()> {
        let mut result = Ok(());
        for member in &self.members {
            if let Err(error) = member.hsm.close() {
                result = Err(error);
            }
        }
        result
    }
}
