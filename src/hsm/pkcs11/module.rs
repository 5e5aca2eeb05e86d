//! Loading a PKCS#11 module, once per process, and the slot-level operations that need no login:
//! listing slots with what their tokens offer, finding a token by label, initialising a token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use serde::Serialize;

use crate::hsm::{Error, Result};

/// Loads `path` and calls `C_Initialize` the first time it is asked for; later calls in the same
/// process get the same context. PKCS#11 allows one initialisation per process.
pub fn load(path: &Path) -> Result<Pkcs11> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let module_error = |reason: String| Error::Module {
        module: path.display().to_string(),
        reason,
    };
    if !path.exists() {
        return Err(module_error(
            "no such file (is the HSM's PKCS#11 library installed? see hsm-profiles/)".into(),
        ));
    }
    let ctx = Pkcs11::new(path).map_err(|e| module_error(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(module_error(describe(&e))),
    }
    modules.insert(path.to_owned(), ctx.clone());
    Ok(ctx)
}

/// A short, stable rendering of a cryptoki error: `C_SignInit: KeyHandleInvalid`.
pub fn describe(error: &CkError) -> String {
    match error {
        CkError::Pkcs11(rv, function) => format!("C_{function:?}: {rv:?}"),
        other => other.to_string(),
    }
}

/// Wraps a cryptoki error as an [`Error::Pkcs11`].
pub fn ck(error: CkError) -> Error {
    Error::Pkcs11(describe(&error))
}

/// The slot holding the initialised token labelled `label`. Slot numbers move (SoftHSM renumbers
/// a slot when its token is initialised), so tokens are always found by label.
pub fn find_token(ctx: &Pkcs11, label: &str) -> Result<Slot> {
    for slot in ctx.get_slots_with_initialized_token().map_err(ck)? {
        let info = ctx.get_token_info(slot).map_err(ck)?;
        if info.label().trim_end() == label {
            return Ok(slot);
        }
    }
    Err(Error::TokenNotFound(label.to_owned()))
}

/// One slot as `provision slots` reports it.
#[derive(Debug, Serialize)]
pub struct SlotReport {
    pub slot: u64,
    pub description: String,
    pub token_present: bool,
    pub token_initialized: bool,
    pub label: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// `CKM_EC_EDWARDS_KEY_PAIR_GEN` is offered.
    pub ed25519_keygen: bool,
    /// `CKM_EDDSA` is offered.
    pub eddsa_sign: bool,
}

/// Lists every slot of the module with its token and Ed25519 support.
pub fn list_slots(ctx: &Pkcs11) -> Result<Vec<SlotReport>> {
    let mut reports = Vec::new();
    for slot in ctx.get_all_slots().map_err(ck)? {
        let slot_info = ctx.get_slot_info(slot).map_err(ck)?;
        let mut report = SlotReport {
            slot: slot.id(),
            description: slot_info.slot_description().trim_end().to_owned(),
            token_present: slot_info.token_present(),
            token_initialized: false,
            label: None,
            manufacturer: None,
            model: None,
            serial: None,
            ed25519_keygen: false,
            eddsa_sign: false,
        };
        if report.token_present {
            let info = ctx.get_token_info(slot).map_err(ck)?;
            report.token_initialized = info.token_initialized();
            report.label = Some(info.label().trim_end().to_owned());
            report.manufacturer = Some(info.manufacturer_id().trim_end().to_owned());
            report.model = Some(info.model().trim_end().to_owned());
            report.serial = Some(info.serial_number().trim_end().to_owned());
            let mechanisms = ctx.get_mechanism_list(slot).map_err(ck)?;
            report.ed25519_keygen = mechanisms.contains(&MechanismType::ECC_EDWARDS_KEY_PAIR_GEN);
            report.eddsa_sign = mechanisms.contains(&MechanismType::EDDSA);
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Which slot `init_token` initialises.
#[derive(Debug, Clone, Copy)]
pub enum InitSlot {
    /// The first slot whose token is present but not initialised (SoftHSM's free slot).
    FirstFree,
    /// This slot; if its token is already initialised, `reinitialize` must be set, since
    /// `C_InitToken` destroys every object on it.
    Given { slot: u64, reinitialize: bool },
}

/// Initialises a token: `C_InitToken` with the SO PIN and `label`, then `C_InitPIN` with the user
/// PIN. Returns the slot the token is in afterwards (found again by label).
pub fn init_token(
    ctx: &Pkcs11,
    which: InitSlot,
    label: &str,
    so_pin: &AuthPin,
    user_pin: &AuthPin,
) -> Result<u64> {
    if label.is_empty() || label.len() > 32 {
        return Err(Error::Pkcs11(
            "a token label is 1 to 32 bytes long".to_owned(),
        ));
    }
    if find_token(ctx, label).is_ok() {
        return Err(Error::Pkcs11(format!(
            "a token labelled {label:?} already exists; pick another label"
        )));
    }
    let slot = match which {
        InitSlot::FirstFree => {
            let mut free = None;
            for slot in ctx.get_slots_with_token().map_err(ck)? {
                if !ctx.get_token_info(slot).map_err(ck)?.token_initialized() {
                    free = Some(slot);
                    break;
                }
            }
            free.ok_or_else(|| {
                Error::Pkcs11("no slot holds an uninitialised token; pass --slot".to_owned())
            })?
        }
        InitSlot::Given { slot, reinitialize } => {
            let slot = Slot::try_from(slot).map_err(|e| Error::Pkcs11(e.to_string()))?;
            let info = ctx.get_token_info(slot).map_err(ck)?;
            if info.token_initialized() && !reinitialize {
                return Err(Error::Pkcs11(format!(
                    "slot {} already holds token {:?}; initialising it destroys every key on it \
                     (pass --reinitialize if that is what you want)",
                    slot.id(),
                    info.label().trim_end()
                )));
            }
            slot
        }
    };
    ctx.init_token(slot, so_pin, label).map_err(ck)?;
    let slot = find_token(ctx, label)?;
    let session = ctx.open_rw_session(slot).map_err(ck)?;
    session
        .login(UserType::So, Some(so_pin))
        .map_err(|e| Error::Login(describe(&e)))?;
    session.init_pin(user_pin).map_err(ck)?;
    session.logout().map_err(ck)?;
    Ok(slot.id())
}

/// Whether an error means the session (or the login behind it) is gone rather than that the
/// request was bad: the caller must drop the session and reconnect.
pub fn is_session_loss(error: &CkError) -> bool {
    matches!(
        error,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::UserNotLoggedIn
                | RvError::CryptokiNotInitialized,
            _
        )
    )
}

/// Whether a failed sign call certainly did not sign: it failed before `C_Sign` ran.
pub fn failed_before_signing(error: &CkError) -> bool {
    matches!(error, CkError::Pkcs11(_, Function::SignInit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_loss_classification() {
        let lost = CkError::Pkcs11(RvError::SessionHandleInvalid, Function::Sign);
        assert!(is_session_loss(&lost));
        assert!(is_session_loss(&CkError::Pkcs11(
            RvError::DeviceRemoved,
            Function::SignInit
        )));
        assert!(!is_session_loss(&CkError::Pkcs11(
            RvError::KeyHandleInvalid,
            Function::SignInit
        )));
        assert!(failed_before_signing(&CkError::Pkcs11(
            RvError::KeyHandleInvalid,
            Function::SignInit
        )));
        assert!(!failed_before_signing(&lost));
        assert_eq!(describe(&lost), "C_Sign: SessionHandleInvalid");
    }
}
