//! Human approval, as the SignedApproval seed describes it: requests that a person decides, and
//! decisions the token signs so anyone can check them offline.
//!
//! - [`canonical`]: RFC 8785 canonical JSON, the form decisions are signed in;
//! - [`decision`]: the signed payload, JWKs, and offline verification;
//! - [`disclosure`]: the electronic-signature disclosure shown before approving an agreement;
//! - [`envelope`]: evidence envelopes for co-signed requests approved with a drawn signature;
//! - [`totp`]: RFC 6238 codes and `otpauth://` URIs.

pub mod canonical;
pub mod decision;
pub mod disclosure;
pub mod envelope;
pub mod png_chunks;
pub mod totp;
