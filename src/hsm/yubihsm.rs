//! The native YubiHSM 2 backend on the `yubihsm` crate: encrypted, authenticated sessions to the
//! device through `yubihsm-connector` (HTTP) or over USB, with no PKCS#11 module in between.
//!
//! Keys are Ed25519 asymmetric objects with the one capability `sign-eddsa` (never
//! `exportable-under-wrap`), in domain 1. Object ids are 16 bits; [`ObjectId`] holds them as two
//! big-endian bytes, as `yubihsm_pkcs11.so` writes `CKA_ID`, so a key keeps its id whichever way
//! the device is reached. The seal key is an HMAC-SHA256 object: the data key that seals records
//! is `HMAC(seal key, label ‖ salt)`, and the store keeps only the salt.
//!
//! Each configured session is a `yubihsm::Client` with its own session on the device; calls take
//! them in turn. A client whose session fails opens a new one on its next call. A signature whose
//! reply was lost is reported as [`Error::SessionLost`] and never sent again.

use std::sync::atomic::{AtomicUsize, Ordering};

use secrecy::{ExposeSecret as _, SecretString};
use yubihsm::object::{Filter, Label, Origin, Type};
use yubihsm::{Capability, Client, Connector, Credentials, Domain, HttpConfig, UsbConfig};
use zeroize::Zeroizing;

use super::{
    DATA_KEY_LEN, DataKey, DeviceLimits, Error, Hsm, KeyAttributes, KeyExport, ObjectId, Result,
    TokenDescription, TokenKey, WRAP_KEY_LABEL, WrappedKey, WrappedKind,
};

/// How many fresh ids are drawn before giving up on finding a free one.
const OBJECT_ID_ATTEMPTS: usize = 16;
/// What the seal key's HMAC is computed over, before the stored salt.
const DATA_KEY_LABEL: &[u8] = b"sshsign data key v1";
/// Bytes of salt stored for the data key.
const SALT_LEN: usize = 32;
/// The most random bytes asked for in one command (the device answers up to about 2 KB).
const RANDOM_CHUNK: usize = 1024;

/// Where the device is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorAddress {
    /// `yubihsm-connector` at `http://HOST:PORT`.
    Http { host: String, port: u16 },
    /// A device on this machine's USB bus: the first one, or the one with this serial number.
    Usb { serial: Option<String> },
}

impl std::str::FromStr for ConnectorAddress {
    type Err = String;

    /// `http://HOST:PORT`, `usb` or `usb:SERIAL`.
    fn from_str(text: &str) -> Result<Self, String> {
        if text == "usb" {
            return Ok(ConnectorAddress::Usb { serial: None });
        }
        if let Some(serial) = text.strip_prefix("usb:") {
            if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "{text:?}: a serial number is digits, as in usb:0012345678"
                ));
            }
            return Ok(ConnectorAddress::Usb {
                serial: Some(serial.to_owned()),
            });
        }
        let url = url::Url::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
        let host = url.host_str().filter(|_| url.scheme() == "http");
        match (host, url.port_or_known_default(), url.path()) {
            (Some(host), Some(port), "" | "/") => Ok(ConnectorAddress::Http {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                port,
            }),
            _ => Err(format!(
                "{text:?} is not http://HOST:PORT (yubihsm-connector), usb or usb:SERIAL"
            )),
        }
    }
}

impl std::fmt::Display for ConnectorAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectorAddress::Http { host, port } if host.contains(':') => {
                write!(f, "http://[{host}]:{port}")
            }
            ConnectorAddress::Http { host, port } => write!(f, "http://{host}:{port}"),
            ConnectorAddress::Usb { serial: None } => f.write_str("usb"),
            ConnectorAddress::Usb {
                serial: Some(serial),
            } => write!(f, "usb:{serial}"),
        }
    }
}

/// How to reach a YubiHSM 2 natively.
#[derive(Debug)]
pub struct YubiHsmConfig {
    pub connector: ConnectorAddress,
    /// The secret file's text: the authentication key id as four hex digits, then its
    /// password (the form `yubihsm_pkcs11.so` takes as a PIN).
    pub credentials: SecretString,
    pub label: String,
    pub sessions: usize,
    pub limits: DeviceLimits,
    /// Whether new keys may leave the device wrapped (capability `exportable-under-wrap`).
    pub export: KeyExport,
}

/// A YubiHSM 2 reached through its own protocol.
pub struct YubiHsm {
    clients: Vec<Client>,
    next: AtomicUsize,
    description: TokenDescription,
    limits: DeviceLimits,
    export: KeyExport,
}

impl std::fmt::Debug for YubiHsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YubiHsm")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// Splits `0001password` into the authentication key id and the password.
fn parse_credentials(text: &SecretString) -> Result<Credentials> {
    let text = text.expose_secret();
    let malformed = || {
        Error::Login(
            "the credentials file holds the authentication key id as four hex digits followed \
             by its password, e.g. 0001password"
                .to_owned(),
        )
    };
    let (id, password) = text.split_at_checked(4).ok_or_else(malformed)?;
    let id = u16::from_str_radix(id, 16).map_err(|_| malformed())?;
    if password.is_empty() {
        return Err(malformed());
    }
    Ok(Credentials::from_password(id, password.as_bytes()))
}

fn object_id(id: u16) -> ObjectId {
    ObjectId::new(id.to_be_bytes().to_vec())
}

/// The device's 16-bit id for `id`; ids of any other length are not on this device.
fn device_id(id: &ObjectId) -> Option<u16> {
    <[u8; 2]>::try_from(id.as_bytes())
        .ok()
        .map(u16::from_be_bytes)
}

/// A wrap key's id on the device: 16 bits of [`super::wrap_key_id`], never 0 (the device's
/// own), so that every device of a group names the key alike.
pub fn wrap_key_device_id(key: &[u8; 32]) -> u16 {
    let id = super::wrap_key_id(key);
    match u16::from_be_bytes([id.as_bytes()[0], id.as_bytes()[1]]) {
        0 => 1,
        id => id,
    }
}

fn label(text: &str) -> Result<Label> {
    if text.len() > yubihsm::object::LABEL_SIZE {
        return Err(Error::Label(text.to_owned()));
    }
    Label::from_bytes(text.as_bytes()).map_err(|_| Error::Label(text.to_owned()))
}

fn label_text(label: &Label) -> String {
    let bytes: &[u8] = label.as_ref();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// What the device said, for an error message.
fn described(error: &yubihsm::client::Error) -> String {
    match error.device_error() {
        Some(kind) => format!("{error}: {kind}"),
        None => error.to_string(),
    }
}

/// True when the device answered (so nothing was lost): an error of its own.
fn device_answered(error: &yubihsm::client::Error) -> bool {
    error.device_error().is_some()
}

fn not_found(error: &yubihsm::client::Error) -> bool {
    error.device_error() == Some(yubihsm::device::ErrorKind::ObjectNotFound)
}

fn device(error: yubihsm::client::Error) -> Error {
    if error.device_error() == Some(yubihsm::device::ErrorKind::StorageFailed) {
        return Error::Device(format!(
            "{}: the device's storage is full or failing",
            described(&error)
        ));
    }
    Error::Device(described(&error))
}

impl YubiHsm {
    /// Connects, authenticates every session, and reads what the device is. Over HTTP each
    /// session has a connection of its own to yubihsm-connector, so their transfers overlap;
    /// over USB they share the one device handle (a second would find the device busy).
    pub fn open(config: YubiHsmConfig) -> Result<Self> {
        let connector = || -> Result<Connector> {
            Ok(match &config.connector {
                ConnectorAddress::Http { host, port } => Connector::http(&HttpConfig {
                    addr: host.clone(),
                    port: *port,
                    timeout_ms: 5_000,
                }),
                ConnectorAddress::Usb { serial } => Connector::usb(&UsbConfig {
                    serial: serial
                        .as_deref()
                        .map(str::parse)
                        .transpose()
                        .map_err(|e| Error::Device(format!("serial number: {e}")))?,
                    timeout_ms: UsbConfig::DEFAULT_TIMEOUT_MILLIS,
                }),
            })
        };
        let shared = connector()?;
        let credentials = parse_credentials(&config.credentials)?;
        let clients = (0..config.sessions.clamp(1, 16))
            .map(|n| {
                let link = match (&config.connector, n) {
                    (ConnectorAddress::Http { .. }, 1..) => connector()?,
                    _ => shared.clone(),
                };
                Client::open(link, credentials.clone(), true).map_err(|e| {
                    Error::Login(format!(
                        "YubiHSM at {}: {}",
                        config.connector,
                        described(&e)
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let info = clients[0].device_info().map_err(device)?;
        let description = TokenDescription {
            module: format!("yubihsm native protocol, {}", config.connector),
            label: config.label.clone(),
            manufacturer: "Yubico".to_owned(),
            model: format!(
                "YubiHSM 2 (firmware {}.{}.{})",
                info.major_version, info.minor_version, info.build_version
            ),
            serial: info.serial_number.to_string(),
            sessions: clients.len(),
        };
        Ok(YubiHsm {
            clients,
            next: AtomicUsize::new(0),
            description,
            limits: config.limits,
            export: config.export,
        })
    }

    /// `capability`, and `exportable-under-wrap` where keys may leave wrapped.
    fn capabilities(&self, capability: Capability) -> Capability {
        match self.export {
            KeyExport::Never => capability,
            KeyExport::Wrapped | KeyExport::WrappedUntrusted => {
                capability | Capability::EXPORTABLE_UNDER_WRAP
            }
        }
    }

    /// Puts the backup group's wrap key into the device as an AES-256-CCM wrap key that may
    /// export and import only the kinds of object the appliance keeps, under the 16-bit id
    /// [`wrap_key_device_id`] gives. Returns its id and whether it was already there.
    pub fn import_wrap_key(&self, key: &Zeroizing<[u8; 32]>) -> Result<(ObjectId, bool)> {
        let id = wrap_key_device_id(key);
        if self.objects(Type::WrapKey, None)?.contains(&id) {
            return Ok((object_id(id), true));
        }
        self.act(|client| {
            client.put_wrap_key(
                id,
                label(WRAP_KEY_LABEL).unwrap_or_default(),
                Domain::DOM1,
                Capability::EXPORT_WRAPPED | Capability::IMPORT_WRAPPED,
                Capability::SIGN_EDDSA | Capability::SIGN_HMAC | Capability::EXPORTABLE_UNDER_WRAP,
                yubihsm::wrap::Algorithm::Aes256Ccm,
                key.to_vec(),
            )
        })?;
        Ok((object_id(id), false))
    }

    fn client(&self) -> &Client {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        &self.clients[n]
    }

    /// Runs a call without side effects; after a lost session it is made once more (the client
    /// opens a new session).
    fn read<T>(
        &self,
        f: impl Fn(&Client) -> Result<T, yubihsm::client::Error>,
    ) -> Result<T, yubihsm::client::Error> {
        let client = self.client();
        match f(client) {
            Err(e) if !device_answered(&e) => {
                tracing::warn!(error = %described(&e), "YubiHSM session lost; reconnecting");
                f(client)
            }
            other => other,
        }
    }

    /// Reports a lost reply to a call that may have had its effect on the device: the session
    /// is reopened at once to say whether the device is back, and the call is not repeated.
    fn lost(&self, client: &Client, error: &yubihsm::client::Error) -> Error {
        tracing::warn!(error = %described(error), "YubiHSM session lost; reconnecting");
        let reconnect = match client.connect() {
            Ok(()) => "the appliance reconnected to the token".to_owned(),
            Err(e) => format!("reconnecting failed ({})", described(&e)),
        };
        Error::SessionLost {
            cause: described(error),
            reconnect,
        }
    }

    /// Runs a call that changes the device, once: an error the device gave is reported as
    /// such, a lost reply as [`Error::SessionLost`].
    fn act<T>(&self, f: impl FnOnce(&Client) -> Result<T, yubihsm::client::Error>) -> Result<T> {
        let client = self.client();
        f(client).map_err(|e| {
            if device_answered(&e) {
                device(e)
            } else {
                self.lost(client, &e)
            }
        })
    }

    /// Objects of `kind` labelled `label` (any label when `None`).
    fn objects(&self, kind: Type, label_text: Option<&str>) -> Result<Vec<u16>> {
        let mut filters = vec![Filter::Type(kind)];
        if let Some(text) = label_text {
            filters.push(Filter::Label(label(text)?));
        }
        let found = self
            .read(|client| client.list_objects(&filters))
            .map_err(device)?;
        Ok(found.into_iter().map(|entry| entry.object_id).collect())
    }

    /// A random object id that no object of `kind` uses, after checking the device has room.
    fn free_id(&self, kind: Type) -> Result<u16> {
        let held = self
            .read(|client| client.list_objects(&[]))
            .map_err(device)?
            .len();
        self.limits.check_room(held)?;
        for _ in 0..OBJECT_ID_ATTEMPTS {
            let mut bytes = [0u8; 2];
            self.random(&mut bytes)?;
            let id = u16::from_be_bytes(bytes);
            if id == 0 {
                continue;
            }
            match self.read(|client| client.get_object_info(id, kind)) {
                Err(e) if not_found(&e) => return Ok(id),
                Err(e) => return Err(device(e)),
                Ok(_) => {}
            }
        }
        Err(Error::Device(
            "could not find a free object id on the device; is it full?".to_owned(),
        ))
    }

    fn key(&self, id: u16) -> Result<Option<TokenKey>> {
        let info = match self.read(|client| client.get_object_info(id, Type::AsymmetricKey)) {
            Err(e) if not_found(&e) => return Ok(None),
            other => other.map_err(device)?,
        };
        if info.algorithm != yubihsm::Algorithm::Asymmetric(yubihsm::asymmetric::Algorithm::Ed25519)
        {
            return Ok(None);
        }
        let public = self
            .read(|client| client.get_public_key(id))
            .map_err(device)?;
        let public_key = <[u8; 32]>::try_from(public.as_ref())
            .map_err(|_| Error::EcPoint(public.as_ref().len()))?;
        Ok(Some(TokenKey {
            object_id: object_id(id),
            label: label_text(&info.label),
            public_key,
        }))
    }

    fn keys(&self, label_text: Option<&str>) -> Result<Vec<TokenKey>> {
        let mut keys = Vec::new();
        for id in self.objects(Type::AsymmetricKey, label_text)? {
            keys.extend(self.key(id)?);
        }
        Ok(keys)
    }

    fn hmac(&self, seal: &ObjectId, salt: &[u8]) -> Result<DataKey> {
        let id = device_id(seal).ok_or_else(|| Error::KeyNotFound(seal.clone()))?;
        let mut input = DATA_KEY_LABEL.to_vec();
        input.extend_from_slice(salt);
        let tag = self
            .read(|client| client.sign_hmac(id, input.clone()))
            .map_err(|e| {
                if not_found(&e) {
                    Error::KeyNotFound(seal.clone())
                } else {
                    device(e)
                }
            })?;
        let tag = Zeroizing::new(tag.into_vec());
        if tag.len() != DATA_KEY_LEN {
            return Err(Error::Device(format!(
                "the seal key's HMAC is {} bytes; expected {DATA_KEY_LEN}",
                tag.len()
            )));
        }
        Ok(tag)
    }
}

impl Hsm for YubiHsm {
    fn generate_ed25519(&self, label_text: &str) -> Result<TokenKey> {
        let label = label(label_text)?;
        let id = self.free_id(Type::AsymmetricKey)?;
        self.act(|client| {
            client.generate_asymmetric_key(
                id,
                label,
                Domain::DOM1,
                self.capabilities(Capability::SIGN_EDDSA),
                yubihsm::asymmetric::Algorithm::Ed25519,
            )
        })?;
        self.key(id)?
            .ok_or_else(|| Error::Device(format!("the key {id:04x} just made is not there")))
    }

    fn find(&self, id: &ObjectId) -> Result<Option<TokenKey>> {
        match device_id(id) {
            Some(id) => self.key(id),
            None => Ok(None),
        }
    }

    fn find_by_label(&self, label: &str) -> Result<Vec<TokenKey>> {
        self.keys(Some(label))
    }

    fn list(&self) -> Result<Vec<TokenKey>> {
        self.keys(None)
    }

    fn sign(&self, id: &ObjectId, message: &[u8]) -> Result<[u8; 64]> {
        self.limits.check_message(message)?;
        let key = device_id(id).ok_or_else(|| Error::KeyNotFound(id.clone()))?;
        let client = self.client();
        match client.sign_ed25519(key, message) {
            Ok(signature) => Ok(signature.to_bytes()),
            Err(e) if not_found(&e) => Err(Error::KeyNotFound(id.clone())),
            Err(e) if device_answered(&e) => Err(device(e)),
            Err(e) => Err(self.lost(client, &e)),
        }
    }

    fn destroy(&self, id: &ObjectId) -> Result<()> {
        let Some(key) = device_id(id) else {
            return Ok(());
        };
        let client = self.client();
        match client.delete_object(key, Type::AsymmetricKey) {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) if device_answered(&e) => Err(device(e)),
            Err(e) => Err(self.lost(client, &e)),
        }
    }

    fn generate_seal_key(&self, label_text: &str) -> Result<ObjectId> {
        let label = label(label_text)?;
        let id = self.free_id(Type::HmacKey)?;
        self.act(|client| {
            client.generate_hmac_key(
                id,
                label,
                Domain::DOM1,
                self.capabilities(Capability::SIGN_HMAC),
                yubihsm::hmac::Algorithm::Sha256,
            )
        })?;
        Ok(object_id(id))
    }

    fn find_seal_keys(&self, label: &str) -> Result<Vec<ObjectId>> {
        Ok(self
            .objects(Type::HmacKey, Some(label))?
            .into_iter()
            .map(object_id)
            .collect())
    }

    fn new_data_key(&self, seal: &ObjectId) -> Result<(DataKey, Vec<u8>)> {
        let mut salt = vec![0u8; SALT_LEN];
        self.random(&mut salt)?;
        Ok((self.hmac(seal, &salt)?, salt))
    }

    fn open_data_key(&self, seal: &ObjectId, stored: &[u8]) -> Result<DataKey> {
        if stored.len() != SALT_LEN {
            return Err(Error::Device(format!(
                "the stored data key is {} bytes; a YubiHSM data key is a {SALT_LEN}-byte salt \
                 (was the store made on another kind of token?)",
                stored.len()
            )));
        }
        self.hmac(seal, stored)
    }

    fn random(&self, out: &mut [u8]) -> Result<()> {
        for chunk in out.chunks_mut(RANDOM_CHUNK) {
            let bytes = self
                .read(|client| client.get_pseudo_random(chunk.len()))
                .map_err(device)?;
            if bytes.len() != chunk.len() {
                return Err(Error::Device(format!(
                    "asked for {} random bytes, got {}",
                    chunk.len(),
                    bytes.len()
                )));
            }
            chunk.copy_from_slice(&bytes);
        }
        Ok(())
    }

    /// A YubiHSM key's private half never leaves the device unless it has the capability
    /// `exportable-under-wrap` (and then only wrapped); one generated inside the device without
    /// it was never anywhere else.
    fn attributes(&self, id: &ObjectId) -> Result<KeyAttributes> {
        let key = device_id(id).ok_or_else(|| Error::KeyNotFound(id.clone()))?;
        let info = match self.read(|client| client.get_object_info(key, Type::AsymmetricKey)) {
            Err(e) if not_found(&e) => return Err(Error::KeyNotFound(id.clone())),
            other => other.map_err(device)?,
        };
        let exportable = info
            .capabilities
            .contains(Capability::EXPORTABLE_UNDER_WRAP);
        Ok(KeyAttributes {
            token: true,
            private: true,
            sensitive: true,
            extractable: exportable,
            always_sensitive: true,
            never_extractable: !exportable && info.origin == Origin::Generated,
            sign: info.capabilities.contains(Capability::SIGN_EDDSA),
            // The device exports only under wrap keys whose delegated capabilities allow it.
            wrap_with_trusted: exportable,
        })
    }

    fn describe(&self) -> TokenDescription {
        self.description.clone()
    }

    fn primary(&self) -> &dyn Hsm {
        self
    }

    fn can_attest(&self) -> bool {
        true
    }

    /// The device signs a certificate over the key with its attestation key (object 0), whose
    /// own certificate is opaque object 0, signed by Yubico's intermediate CA.
    fn attest(&self, id: &ObjectId) -> Result<crate::attestation::Attestation> {
        let key = device_id(id).ok_or_else(|| Error::KeyNotFound(id.clone()))?;
        let attested = self.read(|client| {
            let certificate = client.sign_attestation_certificate(key, None)?;
            let device = client.get_opaque(0)?;
            Ok((certificate, device))
        });
        Ok(match attested {
            Ok((certificate, device)) => {
                crate::attestation::Attestation::of(&[certificate.0, device])
            }
            Err(e) if not_found(&e) => return Err(Error::KeyNotFound(id.clone())),
            Err(e) if device_answered(&e) => crate::attestation::Attestation::unavailable(format!(
                "the device did not attest the key: {}",
                described(&e)
            )),
            Err(e) => return Err(device(e)),
        })
    }

    fn wrap_keys(&self) -> Result<Vec<ObjectId>> {
        Ok(self
            .objects(Type::WrapKey, Some(WRAP_KEY_LABEL))?
            .into_iter()
            .map(object_id)
            .collect())
    }

    /// The device's own wrapped form (AES-256-CCM: nonce, then ciphertext), which carries the
    /// object's id, label and capabilities.
    fn wrap_key(&self, wrap: &ObjectId, kind: WrappedKind, id: &ObjectId) -> Result<Vec<u8>> {
        let wrap = device_id(wrap).ok_or_else(|| Error::NoWrapKey(wrap.clone()))?;
        let object = device_id(id).ok_or_else(|| Error::KeyNotFound(id.clone()))?;
        let kind = match kind {
            WrappedKind::Ed25519 => Type::AsymmetricKey,
            WrappedKind::Seal => Type::HmacKey,
        };
        match self.read(|client| client.export_wrapped(wrap, kind, object)) {
            Ok(message) => Ok(message.into_vec()),
            Err(e) if not_found(&e) => Err(Error::KeyNotFound(id.clone())),
            Err(e) => Err(device(e)),
        }
    }

    fn unwrap_key(&self, wrap: &ObjectId, key: &WrappedKey, _export: KeyExport) -> Result<()> {
        let wrap = device_id(wrap).ok_or_else(|| Error::NoWrapKey(wrap.clone()))?;
        if key.wrapped.is_empty() {
            return Err(Error::CannotRetire(self.description.module.clone()));
        }
        let message = yubihsm::wrap::Message::from_vec(key.wrapped.clone())
            .map_err(|e| Error::Device(format!("the wrapped key {}: {e}", key.object_id)))?;
        let handle = self.act(|client| client.import_wrapped(wrap, message))?;
        // The wrapped form names the object: it must be the one the backup says.
        if object_id(handle.object_id) != key.object_id {
            return Err(Error::Device(format!(
                "the wrapped key came back as {:04x}, not {}",
                handle.object_id, key.object_id
            )));
        }
        Ok(())
    }

    /// Sessions on the device end by themselves after 30 s idle; the clients keep nothing else.
    fn close(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_addresses() {
        let http: ConnectorAddress = "http://127.0.0.1:12345".parse().unwrap();
        assert_eq!(
            http,
            ConnectorAddress::Http {
                host: "127.0.0.1".into(),
                port: 12345
            }
        );
        assert_eq!(http.to_string(), "http://127.0.0.1:12345");
        let v6: ConnectorAddress = "http://[::1]:12345".parse().unwrap();
        assert_eq!(v6.to_string(), "http://[::1]:12345");
        assert_eq!(
            "usb".parse::<ConnectorAddress>().unwrap(),
            ConnectorAddress::Usb { serial: None }
        );
        assert_eq!(
            "usb:0012345678".parse::<ConnectorAddress>().unwrap(),
            ConnectorAddress::Usb {
                serial: Some("0012345678".into())
            }
        );
        for bad in [
            "https://127.0.0.1:12345",
            "http://127.0.0.1:12345/api",
            "usb:",
            "usb:abc",
            "127.0.0.1",
        ] {
            assert!(bad.parse::<ConnectorAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_are_a_key_id_and_a_password() {
        assert!(parse_credentials(&SecretString::from("0001password")).is_ok());
        for bad in ["", "0001", "zz01password", "01"] {
            let err = parse_credentials(&SecretString::from(bad)).unwrap_err();
            assert!(err.to_string().contains("four hex digits"), "{bad}: {err}");
        }
    }

    #[test]
    fn object_ids_are_two_big_endian_bytes() {
        assert_eq!(object_id(0x1234).as_bytes(), [0x12, 0x34]);
        assert_eq!(device_id(&object_id(0xbeef)), Some(0xbeef));
        assert_eq!(device_id(&ObjectId::new(vec![1, 2, 3])), None);
        assert!(label(&"x".repeat(40)).is_ok());
        assert!(matches!(label(&"x".repeat(41)), Err(Error::Label(_))));
    }
}
