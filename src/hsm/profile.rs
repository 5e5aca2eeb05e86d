//! HSM profiles: one TOML file per device model in `hsm-profiles/`, built into the binary so a
//! profile can be named (`SSHSIGN_HSM_PROFILE=yubihsm2-pkcs11`) as well as given as a path.
//!
//! A profile says where the device's PKCS#11 module usually lives, which token label to use by
//! default, how many sessions suit the device, how it wants the Ed25519 curve named, what its PIN
//! looks like, its known quirks, and what was and was not tested against it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How `CKA_EC_PARAMS` names edwards25519 when generating a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EcParamsForm {
    /// DER PrintableString `"edwards25519"` (PKCS#11 3.0); YubiHSM's module accepts only this.
    #[default]
    Printable,
    /// DER OID 1.3.101.112 (RFC 8410).
    Oid,
}

/// Which code speaks to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A PKCS#11 module (`cryptoki`).
    #[default]
    Pkcs11,
    /// YubiHSM 2's own protocol (the `yubihsm` crate), through `yubihsm-connector` or USB.
    Yubihsm,
}

/// Which login generates and destroys keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyLogin {
    /// The user (operator) login that signs.
    #[default]
    User,
    /// The security officer (NetHSM: Administrator), from its own secret file.
    So,
}

/// Whether, and how, the device lets a key leave wrapped under a wrap key (`provision backup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WrapSupport {
    /// Ed25519 keys cannot leave the device wrapped, or the appliance does not drive it.
    #[default]
    None,
    /// Keys can be bound to trusted wrap keys only (`CKA_WRAP_WITH_TRUSTED`, with `CKA_TRUSTED`
    /// set by the security officer).
    Trusted,
    /// Keys can leave wrapped, but no wrap key can be marked trusted: an extractable key
    /// leaves under any wrap key a user login makes.
    Untrusted,
}

/// The PKCS#11 mechanism that wraps keys for a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WrapMechanism {
    /// `CKM_AES_KEY_WRAP` (RFC 3394): inputs a multiple of 8 bytes, which an Ed25519 PKCS#8
    /// key (48 bytes) and an AES-256 key are.
    AesKeyWrap,
    /// `CKM_AES_KEY_WRAP_PAD` (0x210A; RFC 5649 in SoftHSMv2).
    AesKeyWrapPad,
}

impl WrapMechanism {
    /// The name a backup file gives it.
    pub fn name(self) -> &'static str {
        match self {
            WrapMechanism::AesKeyWrap => "CKM_AES_KEY_WRAP",
            WrapMechanism::AesKeyWrapPad => "CKM_AES_KEY_WRAP_PAD",
        }
    }
}

/// Where each device fact of a profile comes from: a file and function in the vendor module's
/// source, or the vendor's document. Every profile must say.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSources {
    pub ec_params: String,
    pub key_login: String,
    pub objects: String,
    pub message_limit: String,
    pub verify: String,
    pub wrap: String,
}

/// How a generated key's `CKA_ID` is written, which devices constrain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
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
    #[serde(default)]
    pub backend: BackendKind,
    /// Candidate module paths, tried in order (PKCS#11 profiles).
    #[serde(default)]
    pub module: Vec<PathBuf>,
    /// Where the device is reached (native YubiHSM profiles): `http://HOST:PORT` for
    /// `yubihsm-connector`, `usb` or `usb:SERIAL`.
    #[serde(default)]
    pub connector: Option<String>,
    /// Token label used when the configuration names none.
    pub token_label: String,
    /// Size of the session pool.
    pub sessions: usize,
    pub ec_params: EcParamsForm,
    pub object_id: ObjectIdForm,
    /// Which login generates and destroys keys.
    #[serde(default)]
    pub key_login: KeyLogin,
    /// The longest message the device signs with Ed25519, in bytes, when it has a limit.
    #[serde(default)]
    pub message_limit: Option<usize>,
    /// Whether the module offers `C_Verify` (the appliance verifies in software either way).
    pub verify: bool,
    /// The module shows each key's `CKA_ID` as its `CKA_LABEL` and ignores the label given at
    /// generation (NetHSM): the appliance then uses the label as the id, so that its own keys
    /// are found again by label.
    #[serde(default)]
    pub label_is_id: bool,
    /// Whether keys can leave the device wrapped, for backup and restore.
    #[serde(default)]
    pub wrap: WrapSupport,
    /// The mechanism that wraps them (PKCS#11 profiles whose `wrap` is not `none`).
    #[serde(default)]
    pub wrap_mechanism: Option<WrapMechanism>,
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
    pub sources: ProfileSources,
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
    (
        "yubihsm2-native",
        include_str!("../../hsm-profiles/yubihsm2-native.toml"),
    ),
    ("kryoptic", include_str!("../../hsm-profiles/kryoptic.toml")),
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
        let profile: Self = toml::from_str(text).map_err(|e| Error::Invalid {
            path: origin.to_owned(),
            reason: e.to_string(),
        })?;
        let invalid = |reason: &str| Error::Invalid {
            path: origin.to_owned(),
            reason: reason.to_owned(),
        };
        match profile.backend {
            BackendKind::Pkcs11 if profile.module.is_empty() => {
                Err(invalid("a pkcs11 profile lists at least one module path"))
            }
            BackendKind::Yubihsm if profile.connector.is_none() => {
                Err(invalid("a yubihsm profile names its connector"))
            }
            BackendKind::Yubihsm if profile.key_login == KeyLogin::So => Err(invalid(
                "a yubihsm profile has one authentication key: key_login is user",
            )),
            BackendKind::Pkcs11
                if profile.wrap != WrapSupport::None && profile.wrap_mechanism.is_none() =>
            {
                Err(invalid(
                    "a pkcs11 profile that wraps keys names its wrap_mechanism",
                ))
            }
            _ => Ok(profile),
        }
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
        assert_eq!(profiles.len(), 5);
        for profile in &profiles {
            assert!(
                !profile.module.is_empty() || profile.connector.is_some(),
                "{}",
                profile.name
            );
            let cited = &profile.sources;
            for source in [
                &cited.ec_params,
                &cited.key_login,
                &cited.objects,
                &cited.message_limit,
                &cited.verify,
                &cited.wrap,
            ] {
                assert!(source.len() > 10, "{}: {source:?}", profile.name);
            }
            assert!(!profile.tested.is_empty(), "{}", profile.name);
            assert!(!profile.not_tested.is_empty(), "{}", profile.name);
            assert!(profile.sessions >= 1, "{}", profile.name);
        }
        let yubi = HsmProfile::load("yubihsm2-pkcs11").unwrap();
        assert_eq!(yubi.ec_params, EcParamsForm::Printable);
        assert!(yubi.module[0].ends_with("yubihsm_pkcs11.so"));
        assert_eq!(yubi.object_id, ObjectIdForm::Raw2);
        assert_eq!(yubi.message_limit, Some(2047));
        assert_eq!(yubi.key_login, KeyLogin::User);
        // nethsm-pkcs11 reads CKA_EC_PARAMS only as a DER OID, and generates keys as the
        // Administrator (pkcs11/src/backend/key.rs).
        let nethsm = HsmProfile::load("nitrokey-nethsm").unwrap();
        assert_eq!(nethsm.ec_params, EcParamsForm::Oid);
        assert_eq!(nethsm.key_login, KeyLogin::So);
        assert!(!nethsm.verify);
        let native = HsmProfile::load("yubihsm2-native").unwrap();
        assert_eq!(native.backend, BackendKind::Yubihsm);
        assert_eq!(native.objects, Some(256));
        assert_eq!(ObjectIdForm::Hex16.encode(&[0xab, 0x01]), b"ab01");
        // SoftHSMv2 2.6.1 cannot wrap Ed25519 keys; kryoptic cannot mark a wrap key trusted.
        assert_eq!(
            HsmProfile::load("softhsm2").unwrap().wrap,
            WrapSupport::None
        );
        let kryoptic = HsmProfile::load("kryoptic").unwrap();
        assert_eq!(kryoptic.wrap, WrapSupport::Untrusted);
        assert_eq!(kryoptic.wrap_mechanism, Some(WrapMechanism::AesKeyWrap));
        assert_eq!(nethsm.wrap, WrapSupport::None);
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
