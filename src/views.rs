//! Every reply the fronts send, as named `Serialize` types built from the appliance's results:
//! the same view of a thing over SSH, REST and webhooks. The REST API's OpenAPI schemas are
//! generated from these types ([`crate::web::openapi`]). A front adds only what is its own (a
//! page address, the deliveries an API key's owner may see) by wrapping a view, never by
//! editing JSON.
//!
//! - [`requests`]: approval requests, votes, decisions, co-signed requests, evidence, and the
//!   REST replies about approvals;
//! - [`keys`]: signing keys, authorizations, signatures made, pending and verified;
//! - [`account`]: who you are, API keys, authenticators, consents, webhooks;
//! - [`audit`]: checkpoints, proofs, entries;
//! - [`negotiation`]: negotiations and offers;
//! - [`events`]: what webhooks carry;
//! - [`browser`]: what the pages' script is answered;
//! - [`http`]: JWKS, errors, health, the appliance's own keys;
//! - [`provisioning`]: what `sshsign-server provision` prints.

pub mod account;
pub mod audit;
pub mod browser;
pub mod events;
pub mod http;
pub mod keys;
pub mod negotiation;
pub mod provisioning;
pub mod requests;

pub use self::account::*;
pub use self::audit::*;
pub use self::browser::*;
pub use self::events::*;
pub use self::http::*;
pub use self::keys::*;
pub use self::negotiation::*;
pub use self::provisioning::*;
pub use self::requests::*;

/// A view as the JSON an SSH reply carries.
pub fn to_value<T: serde::Serialize>(view: &T) -> serde_json::Value {
    // Views are strings, numbers, lists and maps: they always serialize.
    serde_json::to_value(view).unwrap_or_default()
}
