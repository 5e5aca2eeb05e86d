//! Sealed records: what holds authorization terms, metadata and offers is stored encrypted and
//! authenticated, so the database alone shows none of it and a changed byte is caught.
//!
//! Two keys. The *seal key* is an AES-256 key generated in the token (non-extractable; label in
//! `provisioning/appliance-keys.toml`). It encrypts, once, a 256-bit *data key* drawn from the
//! token's RNG; the store keeps only the encrypted data key (AES-CBC-PAD under the seal key) and
//! a check value. At start-up the token decrypts the data key once; from then on records are
//! sealed in software with AES-256-GCM under it, so no request costs a token call.
//!
//! A sealed record is `nonce (12) ‖ ciphertext ‖ tag (16)`, with the record's kind, id and
//! schema version as associated data: a flipped byte, or a record copied to another id or read as
//! another version, fails to open.

use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

#[cfg(test)]
use crate::hsm::DATA_KEY_LEN;
const CHECK_LABEL: &[u8] = b"sshsign data key check v1";

/// Seal failures. None of them says anything about the plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("sealed {kind} {id:?} does not open: changed, moved, or sealed under another key")]
    Open { kind: &'static str, id: String },
    #[error("the system random number generator failed")]
    Random,
    #[error("the data key does not match its check value: wrong seal key or corrupt store")]
    DataKeyCheck,
}

/// Seals and opens records with the data key.
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer([REDACTED])")
    }
}

/// What the store keeps of the data key: encrypted under the seal key, and its check value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrappedDataKey {
    /// What the token's backend keeps to give the data key back, hex: for PKCS#11,
    /// `iv (16) ‖ AES-CBC-PAD ciphertext`; for the native YubiHSM, the HMAC input.
    pub wrapped: String,
    /// HMAC-SHA256(data key, fixed label), hex: catches a wrong seal key at start-up.
    pub check: String,
}

fn aad(kind: &str, id: &str, version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(kind.len() + id.len() + 24);
    aad.extend_from_slice(b"sshsign-seal-v1\0");
    aad.extend_from_slice(kind.as_bytes());
    aad.push(0);
    aad.extend_from_slice(id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// The check value of a data key.
pub fn check_value(data_key: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, data_key);
    crate::hex::encode(hmac::sign(&key, CHECK_LABEL).as_ref())
}

impl Sealer {
    /// A sealer for `data_key`, after checking it against `check`.
    pub fn new(data_key: &[u8], check: &str) -> Result<Self, Error> {
        let expected = crate::hex::decode(check).ok_or(Error::DataKeyCheck)?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, data_key);
        hmac::verify(&key, CHECK_LABEL, &expected).map_err(|_| Error::DataKeyCheck)?;
        let unbound = UnboundKey::new(&AES_256_GCM, data_key).map_err(|_| Error::DataKeyCheck)?;
        Ok(Sealer {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    /// Seals `plaintext` as record `id` of `kind` at schema `version`.
    pub fn seal(
        &self,
        kind: &str,
        id: &str,
        version: u32,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| Error::Random)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        sealed.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(kind, id, version)),
                &mut body,
            )
            .map_err(|_| Error::Random)?;
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// Opens what [`Self::seal`] made for the same kind, id and version.
    pub fn open(
        &self,
        kind: &'static str,
        id: &str,
        version: u32,
        sealed: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let failed = || Error::Open {
            kind,
            id: id.to_owned(),
        };
        if sealed.len() < NONCE_LEN {
            return Err(failed());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| failed())?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(kind, id, version)), &mut body)
            .map_err(|_| failed())?;
        Ok(plain.to_vec())
    }
}

/// Setting up the data key failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Seal(#[from] Error),
    #[error(transparent)]
    Token(#[from] crate::hsm::Error),
    #[error("the stored data key is malformed")]
    Malformed,
}

/// Has the token make a new data key under its seal key; returns the sealer and what to store.
pub fn new_data_key(
    hsm: &dyn crate::hsm::Hsm,
    seal_key: &crate::hsm::ObjectId,
) -> Result<(Sealer, WrappedDataKey), SetupError> {
    let (data_key, wrapped) = hsm.new_data_key(seal_key)?;
    let stored = WrappedDataKey {
        wrapped: crate::hex::encode(&wrapped),
        check: check_value(&data_key),
    };
    Ok((Sealer::new(&data_key, &stored.check)?, stored))
}

/// Opens the stored data key with the token's seal key: one token call, at start-up.
pub fn open_data_key(
    hsm: &dyn crate::hsm::Hsm,
    seal_key: &crate::hsm::ObjectId,
    stored: &WrappedDataKey,
) -> Result<Sealer, SetupError> {
    let wrapped = crate::hex::decode(&stored.wrapped).ok_or(SetupError::Malformed)?;
    if wrapped.is_empty() {
        return Err(SetupError::Malformed);
    }
    let data_key = hsm
        .open_data_key(seal_key, &wrapped)
        .map_err(|_| SetupError::Seal(Error::DataKeyCheck))?;
    Ok(Sealer::new(&data_key, &stored.check)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        let key = [7u8; DATA_KEY_LEN];
        Sealer::new(&key, &check_value(&key)).unwrap()
    }

    #[test]
    fn round_trip_and_binding() {
        let s = sealer();
        let sealed = s.seal("authorization", "az_1", 1, b"terms").unwrap();
        assert_eq!(
            s.open("authorization", "az_1", 1, &sealed).unwrap(),
            b"terms"
        );
        assert_ne!(
            s.seal("authorization", "az_1", 1, b"terms").unwrap(),
            sealed,
            "fresh nonce"
        );
        assert!(
            s.open("authorization", "az_2", 1, &sealed).is_err(),
            "moved to another id"
        );
        assert!(
            s.open("authorization", "az_1", 2, &sealed).is_err(),
            "another version"
        );
        assert!(
            s.open("pending", "az_1", 1, &sealed).is_err(),
            "another kind"
        );
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 0x01;
            assert!(
                s.open("authorization", "az_1", 1, &flipped).is_err(),
                "byte {i}"
            );
        }
        assert!(s.open("authorization", "az_1", 1, &sealed[..5]).is_err());
    }

    #[test]
    fn a_wrong_data_key_is_caught_by_its_check_value() {
        let check = check_value(&[7u8; DATA_KEY_LEN]);
        assert_eq!(
            Sealer::new(&[8u8; DATA_KEY_LEN], &check).unwrap_err(),
            Error::DataKeyCheck
        );
        assert_eq!(format!("{:?}", sealer()), "Sealer([REDACTED])");
    }
}
