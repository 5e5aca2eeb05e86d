//! The electronic-signature disclosure a person reads before approving a legal agreement, as
//! the sshsign seed's `approve` shows it: over SSH without `--confirm` the reply is this text
//! and nothing is approved; on a request's page it stands above the buttons. The approval's
//! audit entry names the text it was given under ([`tag`]), so the consent is part of the
//! record.

use sha2::{Digest as _, Sha256};

/// The version of [`TEXT`]; a new wording is a new version.
pub const VERSION: &str = "esign-1";

/// What approving a legal agreement means, shown before the approval.
pub const TEXT: &str = "By approving, you confirm: (1) you have reviewed the terms, (2) your \
    approval is legally binding as an electronic signature under the ESIGN Act (15 U.S.C. 7001), \
    and (3) a tamper-evident record will be created.";

/// The request types (SSHSIG namespaces) that are legal agreements: the seed's SAFE and NDA,
/// and any type named as an agreement or a contract.
pub const LEGAL_TYPES: &[&str] = &[
    "safe-agreement",
    "nda",
    "term-sheet",
    "contract",
    "agreement",
];

/// Whether signing in `namespace` is agreeing to a legal document.
pub fn is_legal(namespace: &str) -> bool {
    LEGAL_TYPES.contains(&namespace)
        || namespace.ends_with("-agreement")
        || namespace.ends_with("-contract")
}

/// `esign-1:sha256:<hex>`: the disclosure an approval was given under, for its audit entry.
pub fn tag() -> String {
    format!(
        "{VERSION}:sha256:{}",
        crate::hex::encode(&Sha256::digest(TEXT.as_bytes()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_agreements_are_told_apart() {
        for legal in [
            "safe-agreement",
            "nda",
            "contract",
            "employment-agreement",
            "x-contract",
        ] {
            assert!(is_legal(legal), "{legal}");
        }
        for other in ["git", "file", "agreements", "ndas", "deploy"] {
            assert!(!is_legal(other), "{other}");
        }
        assert!(tag().starts_with("esign-1:sha256:"));
        assert_eq!(tag().len(), "esign-1:sha256:".len() + 64);
    }
}
