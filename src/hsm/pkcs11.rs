//! The PKCS#11 backend on `cryptoki`: SoftHSMv2, YubiHSM 2 (`yubihsm_pkcs11.so`), NetHSM.
//!
//! Keys are generated with `CKM_EC_EDWARDS_KEY_PAIR_GEN`; the private half is a token object
//! that is private, sensitive, never extractable and may only sign. The seal key is an AES-256
//! token object that may only encrypt and decrypt (`CKM_AES_CBC_PAD`). Signatures are pure Ed25519
//! (`CKM_EDDSA`, one shot). Private-key object handles are cached per `CKA_ID` (PKCS#11 handles
//! are shared by all of an application's sessions); a stale handle found at `C_SignInit`, before
//! anything was signed, is looked up again once.
//!
//! Where the profile says keys are made by the security officer (NetHSM's Administrator), key
//! generation and destruction run on a session of their own logged in with the administrator's
//! PIN; signing stays on the user's sessions.

pub mod module;
mod pool;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use self::module::{ck, failed_before_signing, is_session_loss};
use self::pool::{Lease, SessionPool};
use super::profile::{EcParamsForm, ObjectIdForm, WrapMechanism};
use super::{
    DATA_KEY_LEN, DataKey, DeviceLimits, Error, Hsm, KeyAttributes, KeyExport, ObjectId, Result,
    TokenDescription, TokenKey, WRAP_KEY_LABEL, WrappedKey, WrappedKind,
};

/// How many fresh ids are drawn before giving up on finding a free one (only short ids collide).
const OBJECT_ID_ATTEMPTS: usize = 8;

/// How to reach a token through a PKCS#11 module.
#[derive(Debug)]
pub struct Pkcs11Config {
    pub module: PathBuf,
    pub token_label: String,
    pub pin: AuthPin,
    pub sessions: usize,
    pub ec_params: EcParamsForm,
    pub object_id: ObjectIdForm,
    /// The security officer's PIN, when the profile says the SO makes and destroys keys.
    pub admin_pin: Option<AuthPin>,
    /// The module shows `CKA_ID` as `CKA_LABEL`: use the label as the id.
    pub label_is_id: bool,
    pub limits: DeviceLimits,
    /// Whether new keys may leave the token wrapped.
    pub export: KeyExport,
    /// The mechanism that wraps them, where the profile has one.
    pub wrap_mechanism: Option<WrapMechanism>,
}

impl Pkcs11Config {
    /// A token that takes the PKCS#11 defaults: the PrintableString curve name, 16-byte random
    /// ids, the user's login for everything, no device limits (as SoftHSMv2 and kryoptic do).
    pub fn new(module: PathBuf, token_label: String, pin: AuthPin, sessions: usize) -> Self {
        Pkcs11Config {
            module,
            token_label,
            pin,
            sessions,
            ec_params: EcParamsForm::default(),
            object_id: ObjectIdForm::default(),
            admin_pin: None,
            label_is_id: false,
            limits: DeviceLimits::default(),
            export: KeyExport::Never,
            wrap_mechanism: None,
        }
    }
}

/// A token reached through a PKCS#11 module, with a pool of logged-in sessions.
#[derive(Debug)]
pub struct Pkcs11Hsm {
    pool: SessionPool,
    /// The administrator's session, for key generation and destruction, when the profile asks.
    admin: Option<SessionPool>,
    description: TokenDescription,
    ec_params: EcParamsForm,
    object_id: ObjectIdForm,
    label_is_id: bool,
    limits: DeviceLimits,
    export: KeyExport,
    wrap_mechanism: Option<WrapMechanism>,
    handles: RwLock<HashMap<ObjectId, ObjectHandle>>,
}

impl Pkcs11Hsm {
    /// Loads the module (once per process), finds the token by label and logs in.
    pub fn open(config: Pkcs11Config) -> Result<Self> {
        let ctx = module::load(&config.module)?;
        let slot = module::find_token(&ctx, &config.token_label)?;
        let info = ctx.get_token_info(slot).map_err(ck)?;
        let description = TokenDescription {
            module: config.module.display().to_string(),
            label: config.token_label.clone(),
            manufacturer: info.manufacturer_id().trim_end().to_owned(),
            model: info.model().trim_end().to_owned(),
            serial: info.serial_number().trim_end().to_owned(),
            sessions: config.sessions.max(1),
        };
        let admin = config
            .admin_pin
            .map(|pin| SessionPool::new(ctx.clone(), &config.token_label, UserType::So, pin, 1))
            .transpose()?;
        let pool = SessionPool::new(
            ctx,
            &config.token_label,
            UserType::User,
            config.pin,
            config.sessions,
        )?;
        Ok(Pkcs11Hsm {
            pool,
            admin,
            description,
            ec_params: config.ec_params,
            object_id: config.object_id,
            label_is_id: config.label_is_id,
            limits: config.limits,
            export: config.export,
            wrap_mechanism: config.wrap_mechanism,
            handles: RwLock::new(HashMap::new()),
        })
    }

    /// Logs out of the token; used at shutdown.
    pub fn logout(&self) -> Result<()> {
        self.clear_handles();
        if let Some(admin) = &self.admin {
            admin.logout()?;
        }
        self.pool.logout()
    }

    /// Runs `f` on a leased session. A session loss closes the session, reconnects and is
    /// reported; it is never retried here, so a call that may have had an effect happens once.
    fn with_session<T>(&self, f: impl FnOnce(&Session) -> Result<T, CkError>) -> Result<T> {
        self.on(&self.pool, f)
    }

    /// Like [`Self::with_session`], on the session that makes and destroys keys: the
    /// administrator's where the profile says so, else the user's.
    fn with_key_session<T>(&self, f: impl FnOnce(&Session) -> Result<T, CkError>) -> Result<T> {
        self.on(self.admin.as_ref().unwrap_or(&self.pool), f)
    }

    fn on<T>(
        &self,
        pool: &SessionPool,
        f: impl FnOnce(&Session) -> Result<T, CkError>,
    ) -> Result<T> {
        let lease = pool.lease()?;
        match f(&lease) {
            Ok(value) => Ok(value),
            Err(e) if is_session_loss(&e) => Err(self.lost(pool, lease, &e)),
            Err(e) => Err(ck(e)),
        }
    }

    /// Like [`Self::with_session`] for calls without side effects: after a session loss and a
    /// successful reconnect, the call is made once more.
    fn read<T>(&self, f: impl Fn(&Session) -> Result<T, CkError>) -> Result<T> {
        match self.with_session(&f) {
            Err(Error::SessionLost { .. }) => self.with_session(f),
            other => other,
        }
    }

    /// Reports a session of `pool` lost: cached handles are forgotten and the pool reconnects.
    fn lost(&self, pool: &SessionPool, lease: Lease<'_>, cause: &CkError) -> Error {
        self.clear_handles();
        pool.invalidate(lease, cause)
    }

    fn clear_handles(&self) {
        self.handles
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    fn cached_handle(&self, id: &ObjectId) -> Option<ObjectHandle> {
        self.handles
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(id)
            .copied()
    }

    fn remember_handle(&self, id: &ObjectId, handle: ObjectHandle) {
        self.handles
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id.clone(), handle);
    }

    fn forget_handle(&self, id: &ObjectId) {
        self.handles
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(id);
    }

    /// A `CKA_ID` for a new object labelled `label` that no object on the token uses yet: the
    /// label itself where the module shows ids as labels, else random in the device's form.
    /// Refuses when the profile's object budget leaves no room.
    fn free_object_id(&self, label: &str) -> Result<ObjectId> {
        if self.limits.objects.is_some() {
            self.limits.check_room(self.stored_objects()?)?;
        }
        let taken = |id: &ObjectId| {
            self.read(|session| {
                let objects = session.find_objects(&[Attribute::Id(id.as_bytes().to_vec())])?;
                Ok(!objects.is_empty())
            })
        };
        if self.label_is_id {
            let id = ObjectId::new(label.as_bytes().to_vec());
            if taken(&id)? {
                return Err(Error::Pkcs11(format!(
                    "an object with the id {label:?} is already on the token"
                )));
            }
            return Ok(id);
        }
        let mut random = vec![0u8; self.object_id.random_len()];
        for _ in 0..OBJECT_ID_ATTEMPTS {
            self.random(&mut random)?;
            let id = ObjectId::new(self.object_id.encode(&random));
            if !taken(&id)? {
                return Ok(id);
            }
        }
        Err(Error::Pkcs11(
            "could not find a free CKA_ID on the token; is it full?".to_owned(),
        ))
    }

    /// Objects the token stores: keys, certificates and data. Not "every object": PKCS#11 3
    /// tokens such as kryoptic also show mechanism, profile and validation objects (kryoptic
    /// 1.5: about 150), which take no room.
    fn stored_objects(&self) -> Result<usize> {
        self.read(|session| {
            let mut held = 0;
            for class in [
                ObjectClass::PRIVATE_KEY,
                ObjectClass::PUBLIC_KEY,
                ObjectClass::SECRET_KEY,
                ObjectClass::CERTIFICATE,
                ObjectClass::DATA,
            ] {
                held += session
                    .find_objects(&[Attribute::Token(true), Attribute::Class(class)])?
                    .len();
            }
            Ok(held)
        })
    }

    fn ec_params(&self) -> Vec<u8> {
        match self.ec_params {
            // DER PrintableString "edwards25519": what YubiHSM's module requires.
            EcParamsForm::Printable => {
                let mut der = vec![0x13, 12];
                der.extend_from_slice(b"edwards25519");
                der
            }
            // DER OBJECT IDENTIFIER 1.3.101.112 (id-Ed25519, RFC 8410).
            EcParamsForm::Oid => vec![0x06, 0x03, 0x2b, 0x65, 0x70],
        }
    }

    fn keys_matching(&self, template: &[Attribute]) -> Result<Vec<TokenKey>> {
        let found = self.read(|session| {
            let mut search = vec![
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::EC_EDWARDS),
            ];
            search.extend_from_slice(template);
            session
                .find_objects(&search)?
                .into_iter()
                .map(|handle| read_public_object(session, handle))
                .collect::<Result<Vec<_>, _>>()
        })?;
        found
            .into_iter()
            .map(PublicObject::into_token_key)
            .collect()
    }
}

/// The attributes of a public key object, as read; [`PublicObject::into_token_key`] checks them.
#[derive(Debug, Default)]
struct PublicObject {
    id: Vec<u8>,
    label: String,
    ec_point: Vec<u8>,
}

impl PublicObject {
    fn into_token_key(self) -> Result<TokenKey> {
        Ok(TokenKey {
            object_id: ObjectId::new(self.id),
            label: self.label,
            public_key: parse_ec_point(&self.ec_point)?,
        })
    }
}

fn read_public_object(session: &Session, handle: ObjectHandle) -> Result<PublicObject, CkError> {
    let mut object = PublicObject::default();
    let wanted = [
        AttributeType::Id,
        AttributeType::Label,
        AttributeType::EcPoint,
    ];
    for attribute in session.get_attributes(handle, &wanted)? {
        match attribute {
            Attribute::Id(bytes) => object.id = bytes,
            Attribute::Label(bytes) => object.label = String::from_utf8_lossy(&bytes).into_owned(),
            Attribute::EcPoint(bytes) => object.ec_point = bytes,
            _ => {}
        }
    }
    Ok(object)
}

/// The object of `class` with `CKA_ID` `id`. A private key that cannot be seen may be hidden by a
/// lost login (`C_Logout`, a token restart), which hides every private object: that case is
/// reported as `CKR_USER_NOT_LOGGED_IN`, a session loss, rather than as a missing key.
fn find_one(
    session: &Session,
    class: ObjectClass,
    id: &ObjectId,
) -> Result<Option<ObjectHandle>, CkError> {
    let key_type = if class == ObjectClass::SECRET_KEY {
        KeyType::AES
    } else {
        KeyType::EC_EDWARDS
    };
    let found = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::KeyType(key_type),
            Attribute::Id(id.as_bytes().to_vec()),
        ])?
        .first()
        .copied();
    if found.is_none() && class != ObjectClass::PUBLIC_KEY {
        let state = session.get_session_info()?.session_state();
        if matches!(state, SessionState::RoPublic | SessionState::RwPublic) {
            return Err(CkError::Pkcs11(
                RvError::UserNotLoggedIn,
                Function::FindObjects,
            ));
        }
    }
    Ok(found)
}

/// Parses `CKA_EC_POINT`: exactly `04 20 ‖ key` (a DER OCTET STRING, as PKCS#11 3.0 says) or the
/// 32 raw bytes some modules return. Anything else is refused.
pub fn parse_ec_point(point: &[u8]) -> Result<[u8; 32]> {
    let raw = match point {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
        raw if raw.len() == 32 => raw,
        other => return Err(Error::EcPoint(other.len())),
    };
    let mut key = [0u8; 32];
    key.copy_from_slice(raw);
    Ok(key)
}

impl Hsm for Pkcs11Hsm {
    fn generate_ed25519(&self, label: &str) -> Result<TokenKey> {
        let object_id = self.free_object_id(label)?;
        let public_template = self.public_key_template(&object_id, label);
        let private_template = private_key_template(&object_id, label, self.export);
        let (private, public) = self.with_key_session(|session| {
            let (public, private) = session.generate_key_pair(
                &Mechanism::EccEdwardsKeyPairGen,
                &public_template,
                &private_template,
            )?;
            Ok((private, read_public_object(session, public)?))
        })?;
        self.remember_handle(&object_id, private);
        let key = public.into_token_key()?;
        Ok(TokenKey { object_id, ..key })
    }

    fn find(&self, id: &ObjectId) -> Result<Option<TokenKey>> {
        let keys = self.keys_matching(&[Attribute::Id(id.as_bytes().to_vec())])?;
        let Some(key) = keys.into_iter().next() else {
            return Ok(None);
        };
        let has_private =
            self.read(|session| Ok(find_one(session, ObjectClass::PRIVATE_KEY, id)?.is_some()))?;
        Ok(has_private.then_some(key))
    }

    fn find_by_label(&self, label: &str) -> Result<Vec<TokenKey>> {
        self.keys_matching(&[Attribute::Label(label.as_bytes().to_vec())])
    }

    fn list(&self) -> Result<Vec<TokenKey>> {
        self.keys_matching(&[])
    }

    fn sign(&self, id: &ObjectId, message: &[u8]) -> Result<[u8; 64]> {
        self.limits.check_message(message)?;
        let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
        let lease = self.pool.lease()?;
        let mut looked_up = false;
        let signature = loop {
            let handle = match self.cached_handle(id) {
                Some(handle) => handle,
                None => {
                    looked_up = true;
                    match find_one(&lease, ObjectClass::PRIVATE_KEY, id) {
                        Ok(Some(handle)) => {
                            self.remember_handle(id, handle);
                            handle
                        }
                        Ok(None) => return Err(Error::KeyNotFound(id.clone())),
                        Err(e) if is_session_loss(&e) => {
                            return Err(self.lost(&self.pool, lease, &e));
                        }
                        Err(e) => return Err(ck(e)),
                    }
                }
            };
            match lease.sign(&mechanism, handle, message) {
                Ok(signature) => break signature,
                Err(e) if is_session_loss(&e) => return Err(self.lost(&self.pool, lease, &e)),
                // A stale cached handle fails at C_SignInit, before anything is signed: look the
                // key up again, once.
                Err(e) if !looked_up && failed_before_signing(&e) && is_stale_handle(&e) => {
                    self.forget_handle(id);
                }
                Err(e) => return Err(ck(e)),
            }
        };
        signature
            .as_slice()
            .try_into()
            .map_err(|_| Error::SignatureLength(signature.len()))
    }

    fn destroy(&self, id: &ObjectId) -> Result<()> {
        self.forget_handle(id);
        self.with_key_session(|session| {
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                if let Some(handle) = find_one(session, class, id)? {
                    session.destroy_object(handle)?;
                }
            }
            Ok(())
        })
    }

    fn generate_seal_key(&self, label: &str) -> Result<ObjectId> {
        let object_id = self.free_object_id(label)?;
        let mut template = vec![Attribute::ValueLen(32.into())];
        template.extend(seal_key_template(&object_id, label, self.export));
        self.with_key_session(|session| session.generate_key(&Mechanism::AesKeyGen, &template))?;
        Ok(object_id)
    }

    fn find_seal_keys(&self, label: &str) -> Result<Vec<ObjectId>> {
        self.read(|session| {
            let handles = session.find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Label(label.as_bytes().to_vec()),
            ])?;
            let mut ids = Vec::new();
            for handle in handles {
                for attribute in session.get_attributes(handle, &[AttributeType::Id])? {
                    if let Attribute::Id(id) = attribute {
                        ids.push(ObjectId::new(id));
                    }
                }
            }
            Ok(ids)
        })
    }

    /// A data key from the token's RNG, stored as `iv ‖ AES-CBC-PAD(seal key, iv, data key)`.
    fn new_data_key(&self, seal: &ObjectId) -> Result<(DataKey, Vec<u8>)> {
        let mut data_key = Zeroizing::new(vec![0u8; DATA_KEY_LEN]);
        self.random(&mut data_key)?;
        let mut iv = [0u8; 16];
        self.random(&mut iv)?;
        let mut stored = iv.to_vec();
        stored.extend_from_slice(&self.encrypt(seal, iv, &data_key)?);
        Ok((data_key, stored))
    }

    fn open_data_key(&self, seal: &ObjectId, stored: &[u8]) -> Result<DataKey> {
        let (iv, ciphertext) = stored
            .split_first_chunk::<16>()
            .filter(|(_, ciphertext)| !ciphertext.is_empty())
            .ok_or_else(|| Error::Pkcs11("the stored data key is too short".to_owned()))?;
        Ok(Zeroizing::new(self.decrypt(seal, *iv, ciphertext)?))
    }

    fn random(&self, out: &mut [u8]) -> Result<()> {
        let bytes = self.read(|session| {
            let mut buf = vec![0u8; out.len()];
            session.generate_random_slice(&mut buf)?;
            Ok(buf)
        })?;
        out.copy_from_slice(&bytes);
        Ok(())
    }

    fn attributes(&self, id: &ObjectId) -> Result<KeyAttributes> {
        self.key_attributes(id)
    }

    fn describe(&self) -> TokenDescription {
        self.description.clone()
    }

    fn primary(&self) -> &dyn Hsm {
        self
    }

    fn close(&self) -> Result<()> {
        self.logout()
    }

    fn retire(&self, id: &ObjectId) -> Result<()> {
        self.forget_handle(id);
        self.with_key_session(|session| {
            if let Some(handle) = find_one(session, ObjectClass::PRIVATE_KEY, id)? {
                session.destroy_object(handle)?;
            }
            Ok(())
        })
    }

    fn wrap_keys(&self) -> Result<Vec<ObjectId>> {
        self.find_seal_keys(WRAP_KEY_LABEL)
    }

    fn wrap_key(&self, wrap: &ObjectId, kind: WrappedKind, id: &ObjectId) -> Result<Vec<u8>> {
        let mechanism = self.wrap_mechanism()?;
        let class = match kind {
            WrappedKind::Ed25519 => ObjectClass::PRIVATE_KEY,
            WrappedKind::Seal => ObjectClass::SECRET_KEY,
        };
        let handles = self.read(|session| {
            Ok((
                find_one(session, ObjectClass::SECRET_KEY, wrap)?,
                find_one(session, class, id)?,
            ))
        })?;
        let wrapping = handles.0.ok_or_else(|| Error::NoWrapKey(wrap.clone()))?;
        let key = handles.1.ok_or_else(|| Error::KeyNotFound(id.clone()))?;
        // Wrapping has no effect on the token: it may be asked again after a reconnect.
        self.read(|session| session.wrap_key(&mechanism, wrapping, key))
            .map_err(|e| wrap_refused(e, id))
    }

    fn unwrap_key(&self, wrap: &ObjectId, key: &WrappedKey, export: KeyExport) -> Result<()> {
        let mechanism = self.wrap_mechanism()?;
        let wrapping = self
            .read(|session| find_one(session, ObjectClass::SECRET_KEY, wrap))?
            .ok_or_else(|| Error::NoWrapKey(wrap.clone()))?;
        let (id, label) = (&key.object_id, key.label.as_str());
        match (key.kind, key.public_key) {
            (WrappedKind::Seal, _) => {
                let template = seal_key_template(id, label, export);
                self.with_key_session(|session| {
                    session.unwrap_key(&mechanism, wrapping, &key.wrapped, &template)
                })?;
            }
            (WrappedKind::Ed25519, Some(public_key)) => {
                let mut private = vec![
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::KeyType(KeyType::EC_EDWARDS),
                ];
                private.extend(private_key_template(id, label, export));
                let mut point = vec![0x04, 0x20];
                point.extend_from_slice(&public_key);
                let mut public = vec![
                    Attribute::Class(ObjectClass::PUBLIC_KEY),
                    Attribute::KeyType(KeyType::EC_EDWARDS),
                    Attribute::EcPoint(point),
                ];
                public.extend(self.public_key_template(id, label));
                if key.wrapped.is_empty() {
                    // A retired key: its public half alone.
                    self.with_key_session(|session| session.create_object(&public))?;
                    return Ok(());
                }
                // Both halves or neither: a private half whose public half could not be made is
                // destroyed again.
                self.with_key_session(|session| {
                    let handle =
                        session.unwrap_key(&mechanism, wrapping, &key.wrapped, &private)?;
                    if let Err(e) = session.create_object(&public) {
                        let _ = session.destroy_object(handle);
                        return Err(e);
                    }
                    Ok(())
                })?;
            }
            (WrappedKind::Ed25519, None) => {
                return Err(Error::Pkcs11(format!(
                    "the backup gives no public key for {id}"
                )));
            }
        }
        Ok(())
    }
}

/// The attributes that say whether a new key may leave the token, and how.
fn export_attributes(export: KeyExport) -> Vec<Attribute> {
    match export {
        KeyExport::Never => vec![Attribute::Extractable(false)],
        KeyExport::Wrapped => vec![
            Attribute::Extractable(true),
            Attribute::WrapWithTrusted(true),
        ],
        KeyExport::WrappedUntrusted => vec![Attribute::Extractable(true)],
    }
}

/// An Ed25519 private key's template: a private, sensitive token object that may only sign,
/// leaving the token only as `export` allows.
fn private_key_template(id: &ObjectId, label: &str, export: KeyExport) -> Vec<Attribute> {
    let mut template = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Derive(false),
        Attribute::Id(id.as_bytes().to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    template.extend(export_attributes(export));
    template
}

/// The seal key's template (less its length, which generation alone gives).
fn seal_key_template(id: &ObjectId, label: &str, export: KeyExport) -> Vec<Attribute> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Id(id.as_bytes().to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    template.extend(export_attributes(export));
    template
}

/// A wrap refused because of the key's own protection, said in words.
fn wrap_refused(error: Error, id: &ObjectId) -> Error {
    match error {
        Error::Pkcs11(text)
            if [
                "KeyUnextractable",
                "KeyNotWrappable",
                "KeyFunctionNotPermitted",
            ]
            .iter()
            .any(|code| text.contains(code)) =>
        {
            Error::Pkcs11(format!(
                "the key {id} cannot leave the token ({text}): it was made with \
                 SSHSIGN_KEY_EXPORT=never, or this token cannot wrap its kind"
            ))
        }
        other => other,
    }
}

/// Puts the backup group's wrap key (AES-256, `key`) into the token `config` names, under the id
/// [`super::wrap_key_id`] gives: logged in as the security officer with `so_pin` when the key
/// is to be trusted (only that login may set `CKA_TRUSTED`; such a key is a public object, as
/// the SO cannot make private ones, but it is sensitive and never extractable), else as the
/// user. Returns the id and whether the key was already there.
pub fn import_wrap_key(
    config: &Pkcs11Config,
    so_pin: Option<&AuthPin>,
    key: &Zeroizing<[u8; 32]>,
) -> Result<(ObjectId, bool)> {
    let id = super::wrap_key_id(key);
    let ctx = module::load(&config.module)?;
    let slot = module::find_token(&ctx, &config.token_label)?;
    let session = ctx.open_rw_session(slot).map_err(ck)?;
    let trusted = config.export == KeyExport::Wrapped;
    let (user, pin) = match (trusted, so_pin) {
        (true, Some(pin)) => (UserType::So, pin),
        (true, None) => {
            return Err(Error::Login(
                "a trusted wrap key is made by the security officer: name its PIN file with \
                 SSHSIGN_HSM_ADMIN_PIN_FILE"
                    .to_owned(),
            ));
        }
        (false, _) => (UserType::User, &config.pin),
    };
    session
        .login(user, Some(pin))
        .map_err(|e| Error::Login(e.to_string()))?;
    let result = (|| {
        if !session
            .find_objects(&[Attribute::Id(id.as_bytes().to_vec())])
            .map_err(ck)?
            .is_empty()
        {
            return Ok(true);
        }
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Value(key.to_vec()),
            Attribute::Token(true),
            Attribute::Private(!trusted),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
            Attribute::Id(id.as_bytes().to_vec()),
            Attribute::Label(WRAP_KEY_LABEL.as_bytes().to_vec()),
        ];
        if trusted {
            template.push(Attribute::Trusted(true));
        }
        let created = session.create_object(&template).map_err(ck);
        // The template held the key: wipe the copy.
        for attribute in &mut template {
            if let Attribute::Value(value) = attribute {
                zeroize::Zeroize::zeroize(value);
            }
        }
        created.map(|_| false)
    })();
    let _ = session.logout();
    result.map(|existed| (id, existed))
}

impl Pkcs11Hsm {
    /// An Ed25519 public key's template: a public token object that verifies, with the curve
    /// named as the profile says.
    fn public_key_template(&self, id: &ObjectId, label: &str) -> Vec<Attribute> {
        vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(self.ec_params()),
            Attribute::Id(id.as_bytes().to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ]
    }

    fn wrap_mechanism(&self) -> Result<Mechanism<'static>> {
        match self.wrap_mechanism {
            Some(WrapMechanism::AesKeyWrap) => Ok(Mechanism::AesKeyWrap),
            Some(WrapMechanism::AesKeyWrapPad) => Ok(Mechanism::AesKeyWrapPad),
            None => Err(Error::NoWrap(self.description.module.clone())),
        }
    }

    /// AES-CBC with PKCS#7 padding (`CKM_AES_CBC_PAD`) under a token AES key.
    fn encrypt(&self, id: &ObjectId, iv: [u8; 16], plaintext: &[u8]) -> Result<Vec<u8>> {
        self.with_session(|session| {
            let key = find_one(session, ObjectClass::SECRET_KEY, id)?.ok_or(CkError::Pkcs11(
                RvError::KeyHandleInvalid,
                Function::EncryptInit,
            ))?;
            session.encrypt(&Mechanism::AesCbcPad(iv), key, plaintext)
        })
    }

    /// The inverse of [`Self::encrypt`].
    fn decrypt(&self, id: &ObjectId, iv: [u8; 16], ciphertext: &[u8]) -> Result<Vec<u8>> {
        self.with_session(|session| {
            let key = find_one(session, ObjectClass::SECRET_KEY, id)?.ok_or(CkError::Pkcs11(
                RvError::KeyHandleInvalid,
                Function::DecryptInit,
            ))?;
            session.decrypt(&Mechanism::AesCbcPad(iv), key, ciphertext)
        })
    }

    fn key_attributes(&self, id: &ObjectId) -> Result<KeyAttributes> {
        let values = self.read(|session| {
            let Some(handle) = find_one(session, ObjectClass::PRIVATE_KEY, id)? else {
                return Ok(None);
            };
            session
                .get_attributes(
                    handle,
                    &[
                        AttributeType::Token,
                        AttributeType::Private,
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                        AttributeType::AlwaysSensitive,
                        AttributeType::NeverExtractable,
                        AttributeType::Sign,
                        AttributeType::WrapWithTrusted,
                    ],
                )
                .map(Some)
        })?;
        let values = values.ok_or_else(|| Error::KeyNotFound(id.clone()))?;
        // A missing attribute reads as the unsafe answer, so a check can only fail closed.
        let mut attributes = KeyAttributes {
            token: false,
            private: false,
            sensitive: false,
            extractable: true,
            always_sensitive: false,
            never_extractable: false,
            sign: false,
            wrap_with_trusted: false,
        };
        for value in values {
            match value {
                Attribute::Token(v) => attributes.token = v,
                Attribute::Private(v) => attributes.private = v,
                Attribute::Sensitive(v) => attributes.sensitive = v,
                Attribute::Extractable(v) => attributes.extractable = v,
                Attribute::AlwaysSensitive(v) => attributes.always_sensitive = v,
                Attribute::NeverExtractable(v) => attributes.never_extractable = v,
                Attribute::Sign(v) => attributes.sign = v,
                Attribute::WrapWithTrusted(v) => attributes.wrap_with_trusted = v,
                _ => {}
            }
        }
        Ok(attributes)
    }
}

fn is_stale_handle(error: &CkError) -> bool {
    matches!(
        error,
        CkError::Pkcs11(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid, _)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_point_forms() {
        let key = [7u8; 32];
        let mut der = vec![0x04, 0x20];
        der.extend_from_slice(&key);
        assert_eq!(parse_ec_point(&der).unwrap(), key);
        assert_eq!(parse_ec_point(&key).unwrap(), key);
        assert!(matches!(
            parse_ec_point(&der[..33]),
            Err(Error::EcPoint(33))
        ));
        let mut long = der.clone();
        long.push(0);
        assert!(matches!(parse_ec_point(&long), Err(Error::EcPoint(35))));
        let mut wrong_tag = der.clone();
        wrong_tag[0] = 0x03;
        assert!(matches!(
            parse_ec_point(&wrong_tag),
            Err(Error::EcPoint(34))
        ));
        assert!(matches!(parse_ec_point(&[]), Err(Error::EcPoint(0))));
    }
}
