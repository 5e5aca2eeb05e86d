//! Human approval, as the SignedApproval seed describes it: requests that a person decides, and
//! decisions the token signs so anyone can check them offline.
//!
//! - [`canonical`]: RFC 8785 canonical JSON, the form decisions are signed in;
//! - [`decision`]: the signed payload, JWKs, and offline verification;
//! - [`view`]: how a request is shown over REST and SSH.

pub mod canonical;
pub mod decision;
pub mod view;
