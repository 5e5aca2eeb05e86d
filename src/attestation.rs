//! Proof that a key was generated inside a device, and its offline check.
//!
//! A YubiHSM 2 signs an X.509 certificate over one of its keys with its attestation key; the
//! device's own attestation certificate (opaque object 0) is signed by Yubico's intermediate CA,
//! which Yubico's root signs. The certificate over the key carries the device's facts as
//! extensions under `1.3.6.1.4.1.41482.4` (Yubico, "YubiHSM 2 Attestation"): firmware (`.1`,
//! OCTET STRING), serial number (`.2`, INTEGER), origin (`.3`, BIT STRING: generated, imported,
//! wrapped, least significant bit first), domains (`.4`), capabilities (`.5`), object id (`.6`,
//! INTEGER), label (`.9`, UTF8String).
//!
//! [`verify`] checks, with nothing but the vendor's root certificate: every signature up the
//! chain to that root, each certificate's validity, that the certificate is over exactly the
//! key in question, and that the device says it generated the key.

use serde::{Deserialize, Serialize};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::{ASN1Time, FromDer as _};

/// The `format` of an attestation file.
pub const FORMAT: &str = "sshsign-attestation/1";
/// Yubico's arc for YubiHSM attestation extensions.
const YUBIHSM_ARC: &str = "1.3.6.1.4.1.41482.4";
/// id-Ed25519 (RFC 8410).
const ED25519_OID: &str = "1.3.101.112";
/// The longest chain read: the key's certificate, the device's, Yubico's intermediates.
const MAX_CHAIN: usize = 8;

/// What a device proves about a key: the certificates, the key's own first, each signed by the
/// next; the vendor's root is not included (the verifier brings it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationFile {
    pub format: String,
    /// The key's token object id, hex.
    pub key_id: String,
    /// The key's Ed25519 public key, hex.
    pub public_key: String,
    /// DER certificates, base64, the key's first.
    pub certificates: Vec<String>,
}

/// Whether a token proved where a key was made, as replies show it: the certificates, the
/// key's own first (DER, base64), or why there are none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attestation {
    pub available: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Attestation {
    /// The device's certificates, the key's first.
    pub fn of(certificates: &[Vec<u8>]) -> Self {
        use base64::Engine as _;
        Attestation {
            available: true,
            certificates: certificates
                .iter()
                .map(|der| base64::engine::general_purpose::STANDARD.encode(der))
                .collect(),
            reason: None,
        }
    }

    /// No attestation, and why.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Attestation {
            available: false,
            certificates: Vec::new(),
            reason: Some(reason.into()),
        }
    }
}

/// Why a token without attestation says nothing of where its keys were made.
pub fn cannot_attest(module: &str) -> String {
    format!(
        "{module} cannot attest: PKCS#11 has no standard way for a token to prove that it \
         generated a key, so nothing shows where a key was made beyond the token's own \
         attributes (CKA_LOCAL, CKA_NEVER_EXTRACTABLE)"
    )
}

/// Whether the token can prove where keys were made, as `keys` says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Support {
    pub available: bool,
    /// How to get it, or why there is none.
    pub how: String,
}

impl Support {
    pub fn of(hsm: &dyn crate::hsm::Hsm) -> Self {
        if hsm.can_attest() {
            Support {
                available: true,
                how: "`attest --key-id KEY` gives the device's certificates; `sshsign \
                      verify-attestation --root VENDOR_ROOT.pem` checks them offline"
                    .to_owned(),
            }
        } else {
            Support {
                available: false,
                how: cannot_attest(&hsm.describe().module),
            }
        }
    }
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub verified: bool,
    /// Certificates checked, the root's signature on the last included.
    pub chain: usize,
    /// The root's subject.
    pub root: String,
    /// The device's serial number, as it attests.
    pub serial: Option<u64>,
    /// The device's firmware, as `major.minor.patch`.
    pub firmware: Option<String>,
    /// What the device says of the key's origin.
    pub origin: Vec<&'static str>,
    pub object_id: Option<u64>,
    pub label: Option<String>,
}

/// Why an attestation does not hold.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the attestation is not valid: {0}")]
    Invalid(String),
    #[error("certificate {index} is not X.509 DER: {reason}")]
    Certificate { index: usize, reason: String },
    #[error("certificate {index}'s signature does not verify under {signer}")]
    Signature { index: usize, signer: String },
    #[error("no root given signed the last certificate ({issuer})")]
    UntrustedRoot { issuer: String },
    #[error("certificate {index} is not valid at this time ({not_before} to {not_after})")]
    Expired {
        index: usize,
        not_before: String,
        not_after: String,
    },
    #[error("the certificate is over another key than {0}")]
    WrongKey(String),
    #[error("the device does not say it generated the key (origin: {0:?})")]
    NotGenerated(Vec<&'static str>),
    #[error("the root file holds no PEM certificate")]
    NoRoot,
}

/// The DER certificates of a PEM file (a root, or a bundle).
pub fn pem_certificates(text: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let mut found = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(text) {
        let pem = pem.map_err(|e| Error::Invalid(format!("PEM: {e}")))?;
        if pem.label == "CERTIFICATE" {
            found.push(pem.contents);
        }
    }
    if found.is_empty() {
        return Err(Error::NoRoot);
    }
    Ok(found)
}

fn parse(index: usize, der: &[u8]) -> Result<X509Certificate<'_>, Error> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(Error::Certificate {
            index,
            reason: "trailing bytes".to_owned(),
        }),
        Err(e) => Err(Error::Certificate {
            index,
            reason: e.to_string(),
        }),
    }
}

/// Checks `file` against the vendor roots `roots` (DER) at Unix time `now`.
pub fn verify(file: &AttestationFile, roots: &[Vec<u8>], now: i64) -> Result<Report, Error> {
    use base64::Engine as _;
    if file.format != FORMAT {
        return Err(Error::Invalid(format!(
            "format {:?}; this verifier reads {FORMAT}",
            file.format
        )));
    }
    if file.certificates.is_empty() || file.certificates.len() > MAX_CHAIN {
        return Err(Error::Invalid(format!(
            "{} certificates; an attestation has 1 to {MAX_CHAIN}",
            file.certificates.len()
        )));
    }
    let public_key = crate::hex::decode(&file.public_key)
        .filter(|k| k.len() == 32)
        .ok_or_else(|| Error::Invalid("public_key is not 32 hex bytes".to_owned()))?;
    let ders = file
        .certificates
        .iter()
        .map(|c| base64::engine::general_purpose::STANDARD.decode(c.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Invalid(format!("a certificate is not base64: {e}")))?;
    let chain = ders
        .iter()
        .enumerate()
        .map(|(i, der)| parse(i, der))
        .collect::<Result<Vec<_>, _>>()?;
    let roots = roots
        .iter()
        .enumerate()
        .map(|(i, der)| parse(i, der))
        .collect::<Result<Vec<_>, _>>()?;
    let at = ASN1Time::from_timestamp(now).map_err(|e| Error::Invalid(e.to_string()))?;
    for (index, cert) in chain.iter().enumerate() {
        if !cert.validity().is_valid_at(at) {
            return Err(Error::Expired {
                index,
                not_before: cert.validity().not_before.to_string(),
                not_after: cert.validity().not_after.to_string(),
            });
        }
        if let Some(signer) = chain.get(index + 1) {
            cert.verify_signature(Some(signer.public_key()))
                .map_err(|_| Error::Signature {
                    index,
                    signer: signer.subject().to_string(),
                })?;
        }
    }
    let last = chain.last().ok_or(Error::NoRoot)?;
    let root = roots
        .iter()
        .find(|root| last.verify_signature(Some(root.public_key())).is_ok())
        .ok_or_else(|| Error::UntrustedRoot {
            issuer: last.issuer().to_string(),
        })?;
    let leaf = &chain[0];
    let spki = leaf.public_key();
    if spki.algorithm.algorithm.to_id_string() != ED25519_OID
        || spki.subject_public_key.data.as_ref() != public_key.as_slice()
    {
        return Err(Error::WrongKey(file.public_key.clone()));
    }
    let mut report = Report {
        verified: true,
        chain: chain.len(),
        root: root.subject().to_string(),
        serial: None,
        firmware: None,
        origin: Vec::new(),
        object_id: None,
        label: None,
    };
    for extension in leaf.extensions() {
        let oid = extension.oid.to_id_string();
        let Some(field) = oid
            .strip_prefix(YUBIHSM_ARC)
            .and_then(|rest| rest.strip_prefix('.'))
        else {
            continue;
        };
        let value = extension.value;
        match field {
            "1" => report.firmware = octets(value).map(|v| firmware(&v)),
            "2" => report.serial = integer(value),
            "3" => report.origin = origin(value),
            "6" => report.object_id = integer(value),
            "9" => report.label = utf8(value),
            _ => {}
        }
    }
    if !report.origin.contains(&"generated") {
        return Err(Error::NotGenerated(report.origin));
    }
    Ok(report)
}

/// A DER element's tag and contents, when `der` is exactly one short-form element.
fn element(der: &[u8]) -> Option<(u8, &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&len, contents) = rest.split_first()?;
    (len < 0x80 && contents.len() == usize::from(len)).then_some((tag, contents))
}

fn octets(der: &[u8]) -> Option<Vec<u8>> {
    match element(der)? {
        (0x04, contents) => Some(contents.to_vec()),
        _ => None,
    }
}

fn integer(der: &[u8]) -> Option<u64> {
    match element(der)? {
        (0x02, contents) if !contents.is_empty() && contents.len() <= 9 => Some(
            contents
                .iter()
                .fold(0u64, |n, &b| n.wrapping_shl(8) | u64::from(b)),
        ),
        _ => None,
    }
}

fn utf8(der: &[u8]) -> Option<String> {
    match element(der)? {
        (0x0c, contents) => String::from_utf8(contents.to_vec()).ok(),
        _ => None,
    }
}

fn firmware(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The origin flags: a BIT STRING whose content, least significant bit first, says generated
/// (bit 0), imported (bit 1) and wrapped (bit 4).
fn origin(der: &[u8]) -> Vec<&'static str> {
    let Some((0x03, [_unused, bits @ ..])) = element(der) else {
        return Vec::new();
    };
    let value = bits
        .iter()
        .rev()
        .fold(0u64, |n, &b| n.wrapping_shl(8) | u64::from(b));
    [(0, "generated"), (1, "imported"), (4, "wrapped")]
        .into_iter()
        .filter(|(bit, _)| value & (1 << bit) != 0)
        .map(|(_, name)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yubico_extension_values_are_read() {
        assert_eq!(integer(&[0x02, 0x03, 0x01, 0x00, 0x01]), Some(65537));
        assert_eq!(integer(&[0x02, 0x00]), None);
        assert_eq!(
            octets(&[0x04, 0x03, 2, 2, 1])
                .map(|v| firmware(&v))
                .as_deref(),
            Some("2.2.1")
        );
        assert_eq!(origin(&[0x03, 0x02, 0x00, 0x01]), ["generated"]);
        assert_eq!(origin(&[0x03, 0x02, 0x00, 0x11]), ["generated", "wrapped"]);
        assert_eq!(origin(&[0x03, 0x02, 0x00, 0x02]), ["imported"]);
        assert!(origin(&[0x03, 0x01]).is_empty());
        assert_eq!(utf8(&[0x0c, 0x02, b'h', b'i']).as_deref(), Some("hi"));
        // A length that does not match, or a long form, is not read.
        assert_eq!(integer(&[0x02, 0x05, 0x01]), None);
        assert_eq!(integer(&[0x02, 0x81, 0x01, 0x01]), None);
    }
}
