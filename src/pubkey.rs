//! Ed25519 public keys in the forms users see: OpenSSH one-line (`ssh-ed25519 AAAA... comment`)
//! and SHA-256 fingerprints (`SHA256:...`), as `ssh-keygen -l` prints them.

use ssh_key::public::{Ed25519PublicKey, KeyData};
use ssh_key::{HashAlg, PublicKey};

fn ssh_key(public_key: &[u8; 32], comment: &str) -> PublicKey {
    PublicKey::new(KeyData::Ed25519(Ed25519PublicKey(*public_key)), comment)
}

/// `ssh-ed25519 AAAA... comment` (no comment when `comment` is empty).
pub fn openssh(public_key: &[u8; 32], comment: &str) -> String {
    // Encoding an Ed25519 key into a String cannot fail.
    ssh_key(public_key, comment)
        .to_openssh()
        .unwrap_or_default()
}

/// `SHA256:...`, as `ssh-keygen -l` prints it.
pub fn fingerprint(public_key: &[u8; 32]) -> String {
    ssh_key(public_key, "")
        .fingerprint(HashAlg::Sha256)
        .to_string()
}

/// The raw key of an OpenSSH `ssh-ed25519` line; `None` for anything else.
pub fn parse_ed25519(line: &str) -> Option<[u8; 32]> {
    let key = PublicKey::from_openssh(line.trim()).ok()?;
    match key.key_data() {
        KeyData::Ed25519(Ed25519PublicKey(bytes)) => Some(*bytes),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUB: &str = include_str!("../tests/vectors/sshsig/ed25519.pub");

    #[test]
    fn openssh_round_trip_and_fingerprint() {
        let key = parse_ed25519(PUB).unwrap();
        assert_eq!(openssh(&key, "ED25519 test key"), PUB.trim());
        assert!(fingerprint(&key).starts_with("SHA256:"));
        assert_eq!(parse_ed25519("ssh-rsa AAAA"), None);
    }
}
