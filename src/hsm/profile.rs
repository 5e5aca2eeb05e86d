//! HSM profiles: one TOML file per device model in `hsm-profiles/`, built into the binary so a
//! profile can be named (`SSHSIGN_HSM_PROFILE=yubihsm2-pkcs11`) as well as given as a path.
//!
//! A profile says where the device's PKCS#11 module usually lives, which token label to use by
//! default, how many sessions suit the device, how it wants the Ed25519 curve named, what its PIN
//! looks like, its known quirks, and what was and was not tested against it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How `CKA_EC_PARAMS` names edwards25519 when generating a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EcParamsForm {
    /// DER PrintableString `"edwards25519"` (PKCS#11 3.0); YubiHSM's module accepts only this.
    #[default]
    Printable,
    /// DER OID 1.3.101.112 (RFC 8410).
    Oid,
}

/// How a generated key's `CKA_ID` is written, which devices constrain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ObjectIdForm {
    /// 16 random bytes.
    #[default]
    Raw16,
    /// 2 random bytes: YubiHSM object ids are 16 bits.
    Raw2,
    /// 16 random bytes written as 32 lowercase hex characters: NetHSM ids are alphanumeric.
    Hex16,
}

impl ObjectIdForm {
    /// How many random bytes an id takes.
    pub fn random_len(self) -> usize {
        match self {
            ObjectIdForm::Raw16 | ObjectIdForm::Hex16 => 16,
            ObjectIdForm::Raw2 => 2,
        }
    }

    /// The `CKA_ID` bytes for `random` ([`Self::random_len`] bytes).
    pub fn encode(self, random: &[u8]) -> Vec<u8> {
        match self {
            ObjectIdForm::Raw16 | ObjectIdForm::Raw2 => random.to_vec(),
            ObjectIdForm::Hex16 => random
                .iter()
                .flat_map(|b| format!("{b:02x}").into_bytes())
                .collect(),
        }
    }
}

/// One device model's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmProfile {
    pub name: String,
    pub description: String,
    /// Candidate module paths, tried in order.
    pub module: Vec<PathBuf>,
    /// Token label used when the configuration names none.
    pub token_label: String,
    /// Size of the session pool.
    pub sessions: usize,
    pub ec_params: EcParamsForm,
    pub object_id: ObjectIdForm,
    /// Objects the device holds in all, when it has a fixed number.
    #[serde(default)]
    pub objects: Option<usize>,
    /// Objects one Ed25519 key pair takes (two in most PKCS#11 tokens: a public and a private
    /// object).
    #[serde(default = "two")]
    pub objects_per_key: usize,
    /// What goes in the PIN file for this device.
    pub pin_format: String,
    pub quirks: Vec<String>,
    pub tested: String,
    pub not_tested: String,
}

fn two() -> usize {
    2
}

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown HSM profile {0:?}; built in: {list}", list = BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))]
    Unknown(String),
    #[error("HSM profile {path}: {reason}")]
    Invalid { path: String, reason: String },
}

const BUILTIN: &[(&str, &str)] = &[
    ("softhsm2", include_str!("../../hsm-profiles/softhsm2.toml")),
    (
        "yubihsm2-pkcs11",
        include_str!("../../hsm-profiles/yubihsm2-pkcs11.toml"),
    ),
    (
        "nitrokey-nethsm",
        include_str!("../../hsm-profiles/nitrokey-nethsm.toml"),
    ),
];

impl HsmProfile {
    /// Loads a built-in profile by name, or a profile file by path.
    pub fn load(name_or_path: &str) -> Result<Self, Error> {
        if let Some((name, text)) = BUILTIN.iter().find(|(name, _)| *name == name_or_path) {
            return Self::parse(name, text);
        }
        let path = Path::new(name_or_path);
        if path.extension().is_some_and(|e| e == "toml") && path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::Invalid {
                path: name_or_path.to_owned(),
                reason: e.to_string(),
            })?;
            return Self::parse(name_or_path, &text);
        }
        Err(Error::Unknown(name_or_path.to_owned()))
    }

    /// Every built-in profile.
    pub fn builtin() -> Result<Vec<Self>, Error> {
        BUILTIN
            .iter()
            .map(|(name, text)| Self::parse(name, text))
            .collect()
    }

    fn parse(origin: &str, text: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| Error::Invalid {
            path: origin.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The first candidate module path that exists on this machine.
    pub fn installed_module(&self) -> Option<&Path> {
        self.module
            .iter()
            .map(PathBuf::as_path)
            .find(|p| p.exists())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse_and_say_what_was_tested() {
        let profiles = HsmProfile::builtin().unwrap();
        assert_eq!(profiles.len(), 3);
        for profile in &profiles {
            assert!(!profile.module.is_empty(), "{}", profile.name);
            assert!(!profile.tested.is_empty(), "{}", profile.name);
            assert!(!profile.not_tested.is_empty(), "{}", profile.name);
            assert!(profile.sessions >= 1, "{}", profile.name);
        }
        let yubi = HsmProfile::load("yubihsm2-pkcs11").unwrap();
        assert_eq!(yubi.ec_params, EcParamsForm::Printable);
        assert!(yubi.module[0].ends_with("yubihsm_pkcs11.so"));
        assert_eq!(yubi.object_id, ObjectIdForm::Raw2);
        assert_eq!(ObjectIdForm::Hex16.encode(&[0xab, 0x01]), b"ab01");
        assert_eq!(ObjectIdForm::Raw2.random_len(), 2);
    }

    #[test]
    fn unknown_profile_names_the_builtin_ones() {
        let err = HsmProfile::load("acme-hsm").unwrap_err().to_string();
        assert!(
            err.contains("softhsm2") && err.contains("nitrokey-nethsm"),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = HsmProfile::parse("x", "name = \"x\"\nsurprise = 1\n").unwrap_err();
        assert!(err.to_string().contains("surprise"), "{err}");
    }
}
