//! SSHSIG, OpenSSH's detached signature format (`PROTOCOL.sshsig`), for Ed25519 keys.
//!
//! This module owns the three byte layouts of the format and nothing else:
//!
//! - the *signed data* the token signs: `"SSHSIG" ‖ string(namespace) ‖ string("") ‖
//!   string(hash_alg) ‖ string(H(message))`; we always hash with SHA-512, and accept SHA-256
//!   when verifying signatures made elsewhere;
//! - the *signature blob*: `"SSHSIG" ‖ uint32(1) ‖ string(public key) ‖ string(namespace) ‖
//!   string("") ‖ string(hash_alg) ‖ string(string("ssh-ed25519") ‖ string(sig))`;
//! - the *armor*: the blob in base64, 70 columns, between `-----BEGIN SSH SIGNATURE-----` and
//!   `-----END SSH SIGNATURE-----`, byte for byte what `ssh-keygen -Y sign` writes.
//!
//! Signing itself happens in the token; callers build [`signed_data`], have the token sign it and
//! wrap the result with [`SshSig::new`]. Verification uses `ed25519-dalek`'s strict rules (no
//! malleable `S`, no small-order keys), which the Wycheproof vectors exercise.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256, Sha512};

use crate::wire::{Reader, WireError, Writer};

const MAGIC: &[u8; 6] = b"SSHSIG";
const VERSION: u32 = 1;
const ARMOR_BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const ARMOR_END: &str = "-----END SSH SIGNATURE-----";
const ARMOR_WIDTH: usize = 70;
const ED25519: &str = "ssh-ed25519";

/// Why a signature could not be made, parsed or verified.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the namespace must not be empty")]
    EmptyNamespace,
    #[error("the signature is not armored as an SSH SIGNATURE")]
    Armor,
    #[error("the signature's base64 is not valid")]
    Base64,
    #[error("the signature blob is malformed: {0}")]
    Malformed(#[from] WireError),
    #[error("the signature blob does not start with SSHSIG")]
    Magic,
    #[error("unsupported SSHSIG version {0}")]
    Version(u32),
    #[error("unsupported key type {0:?}: only ssh-ed25519 is handled")]
    KeyType(String),
    #[error("unsupported hash algorithm {0:?}")]
    HashAlgorithm(String),
    #[error("the signature was made for namespace {found:?}, not {expected:?}")]
    NamespaceMismatch { expected: String, found: String },
    #[error("the signature does not verify")]
    BadSignature,
}

/// Hash algorithms SSHSIG names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha512,
}

impl HashAlg {
    fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha512 => "sha512",
        }
    }

    fn parse(name: &str) -> Result<Self, Error> {
        match name {
            "sha256" => Ok(HashAlg::Sha256),
            "sha512" => Ok(HashAlg::Sha512),
            other => Err(Error::HashAlgorithm(other.to_owned())),
        }
    }

    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha256 => Sha256::digest(message).to_vec(),
            HashAlg::Sha512 => Sha512::digest(message).to_vec(),
        }
    }
}

/// Checks a namespace: SSHSIG forbids the empty one, since it would let a signature made for one
/// purpose be replayed for another.
pub fn check_namespace(namespace: &str) -> Result<(), Error> {
    if namespace.is_empty() {
        return Err(Error::EmptyNamespace);
    }
    Ok(())
}

/// The bytes the key signs for `message` in `namespace` (SHA-512, as `ssh-keygen` does).
pub fn signed_data(namespace: &str, message: &[u8]) -> Result<Vec<u8>, Error> {
    let digest: [u8; 64] = Sha512::digest(message).into();
    signed_data_for_digest(namespace, &digest)
}

/// The bytes the key signs for a message whose SHA-512 is `digest`: all SSHSIG needs of a
/// document, so a request can wait for approval without the document being kept.
pub fn signed_data_for_digest(namespace: &str, digest: &[u8; 64]) -> Result<Vec<u8>, Error> {
    check_namespace(namespace)?;
    Ok(signed_data_with(namespace, HashAlg::Sha512, digest))
}

fn signed_data_with(namespace: &str, hash: HashAlg, digest: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.raw(MAGIC);
    w.string(namespace.as_bytes());
    w.string(b"");
    w.string(hash.name().as_bytes());
    w.string(digest);
    w.into_bytes()
}

/// A parsed or freshly made SSHSIG over an Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSig {
    public_key: [u8; 32],
    namespace: String,
    hash: HashAlg,
    signature: [u8; 64],
}

impl SshSig {
    /// Wraps a signature the token made over [`signed_data`]`(namespace, message)`.
    pub fn new(public_key: [u8; 32], namespace: &str, signature: [u8; 64]) -> Result<Self, Error> {
        check_namespace(namespace)?;
        Ok(SshSig {
            public_key,
            namespace: namespace.to_owned(),
            hash: HashAlg::Sha512,
            signature,
        })
    }

    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The binary signature blob.
    pub fn to_blob(&self) -> Vec<u8> {
        let mut key = Writer::default();
        key.string(ED25519.as_bytes());
        key.string(&self.public_key);
        let mut sig = Writer::default();
        sig.string(ED25519.as_bytes());
        sig.string(&self.signature);

        let mut w = Writer::default();
        w.raw(MAGIC);
        w.u32(VERSION);
        w.string(&key.into_bytes());
        w.string(self.namespace.as_bytes());
        w.string(b"");
        w.string(self.hash.name().as_bytes());
        w.string(&sig.into_bytes());
        w.into_bytes()
    }

    /// The armored form, ending in a newline, exactly as `ssh-keygen -Y sign` writes it.
    pub fn to_armored(&self) -> String {
        let body = BASE64.encode(self.to_blob());
        let mut out = String::with_capacity(body.len() + body.len() / ARMOR_WIDTH + 64);
        out.push_str(ARMOR_BEGIN);
        out.push('\n');
        for line in body.as_bytes().chunks(ARMOR_WIDTH) {
            // base64 output is ASCII, so every chunk is valid UTF-8.
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str(ARMOR_END);
        out.push('\n');
        out
    }

    /// Parses a binary blob.
    pub fn from_blob(blob: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(blob);
        if r.raw(MAGIC.len())? != MAGIC {
            return Err(Error::Magic);
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(Error::Version(version));
        }
        let public_key = parse_ed25519_field(r.string()?, 32)?;
        let namespace = String::from_utf8(r.string()?.to_vec())
            .map_err(|_| Error::Malformed(WireError::Utf8))?;
        let _reserved = r.string()?;
        let hash = HashAlg::parse(&String::from_utf8_lossy(r.string()?))?;
        let signature = parse_ed25519_field(r.string()?, 64)?;
        r.finish()?;
        check_namespace(&namespace)?;
        Ok(SshSig {
            public_key: public_key.try_into().map_err(|_| WireError::Length)?,
            namespace,
            hash,
            signature: signature.try_into().map_err(|_| WireError::Length)?,
        })
    }

    /// Parses the armored form; also accepts the bare base64 body with any whitespace, which is
    /// what survives being passed as a single command-line argument.
    pub fn from_armored(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let body = match text.strip_prefix(ARMOR_BEGIN) {
            Some(rest) => rest
                .trim_end()
                .strip_suffix(ARMOR_END)
                .ok_or(Error::Armor)?,
            None if text.starts_with("-----") => return Err(Error::Armor),
            None => text,
        };
        let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let blob = BASE64.decode(compact).map_err(|_| Error::Base64)?;
        Self::from_blob(&blob)
    }

    /// Verifies the signature in `namespace` over a message known only by its SHA-512 (the
    /// appliance signs co-signed requests from their digest).
    pub fn verify_sha512_digest(&self, namespace: &str, digest: &[u8; 64]) -> Result<(), Error> {
        check_namespace(namespace)?;
        if self.namespace != namespace {
            return Err(Error::NamespaceMismatch {
                expected: namespace.to_owned(),
                found: self.namespace.clone(),
            });
        }
        if self.hash != HashAlg::Sha512 {
            return Err(Error::BadSignature);
        }
        let data = signed_data_with(namespace, HashAlg::Sha512, digest);
        verify_ed25519(&self.public_key, &data, &self.signature)
    }

    /// Verifies the signature over `message` in `namespace`.
    pub fn verify(&self, namespace: &str, message: &[u8]) -> Result<(), Error> {
        check_namespace(namespace)?;
        if self.namespace != namespace {
            return Err(Error::NamespaceMismatch {
                expected: namespace.to_owned(),
                found: self.namespace.clone(),
            });
        }
        let data = signed_data_with(namespace, self.hash, &self.hash.digest(message));
        verify_ed25519(&self.public_key, &data, &self.signature)
    }
}

/// Strict Ed25519 verification, the one rule every signature check in the appliance uses.
pub fn verify_ed25519(
    public_key: &[u8; 32],
    message: &[u8],
    signature: &[u8],
) -> Result<(), Error> {
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(public_key).map_err(|_| Error::BadSignature)?;
    let signature =
        ed25519_dalek::Signature::from_slice(signature).map_err(|_| Error::BadSignature)?;
    key.verify_strict(message, &signature)
        .map_err(|_| Error::BadSignature)
}

/// Reads `string("ssh-ed25519") ‖ string(value)` and checks the value's length.
fn parse_ed25519_field(field: &[u8], len: usize) -> Result<&[u8], Error> {
    let mut r = Reader::new(field);
    let kind = r.string()?;
    if kind != ED25519.as_bytes() {
        return Err(Error::KeyType(String::from_utf8_lossy(kind).into_owned()));
    }
    let value = r.string()?;
    r.finish()?;
    if value.len() != len {
        return Err(Error::Malformed(WireError::Length));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = include_str!("../tests/vectors/sshsig/ed25519.sig");
    const DATA: &[u8] = include_bytes!("../tests/vectors/sshsig/signed-data");

    #[test]
    fn openssh_signature_round_trips_byte_for_byte() {
        let sig = SshSig::from_armored(SIG).unwrap();
        assert_eq!(sig.namespace(), "unittest");
        assert_eq!(sig.to_armored(), SIG);
    }

    #[test]
    fn openssh_signature_verifies_and_rejects_changes() {
        let sig = SshSig::from_armored(SIG).unwrap();
        sig.verify("unittest", DATA).unwrap();
        assert_eq!(sig.verify("unittest", b"other"), Err(Error::BadSignature));
        assert!(matches!(
            sig.verify("git", DATA),
            Err(Error::NamespaceMismatch { .. })
        ));
        assert_eq!(sig.verify("", DATA), Err(Error::EmptyNamespace));
    }

    #[test]
    fn bare_base64_body_is_accepted() {
        let body: String = SIG.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(
            SshSig::from_armored(&body).unwrap(),
            SshSig::from_armored(SIG).unwrap()
        );
    }

    #[test]
    fn malformed_inputs_are_refused() {
        assert_eq!(
            SshSig::from_armored("-----BEGIN PGP SIGNATURE-----\nxx\n"),
            Err(Error::Armor)
        );
        assert_eq!(SshSig::from_armored("!!!"), Err(Error::Base64));
        let mut blob = SshSig::from_armored(SIG).unwrap().to_blob();
        blob.push(0);
        assert!(matches!(
            SshSig::from_blob(&blob),
            Err(Error::Malformed(WireError::Trailing))
        ));
        blob.truncate(20);
        assert!(matches!(SshSig::from_blob(&blob), Err(Error::Malformed(_))));
        assert_eq!(SshSig::from_blob(b"NOTSIG\0\0\0\x01"), Err(Error::Magic));
    }

    #[test]
    fn empty_namespace_is_refused_everywhere() {
        assert_eq!(signed_data("", b"x"), Err(Error::EmptyNamespace));
        assert_eq!(
            SshSig::new([0; 32], "", [0; 64]),
            Err(Error::EmptyNamespace)
        );
    }
}
