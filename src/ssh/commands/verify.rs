//! `verify --signature SIG [--type NAMESPACE] [--key-id ID]`: checks an SSHSIG over the payload
//! on stdin. Any valid SSHSIG verifies; the reply says whether one of this appliance's keys made
//! it. With `--key-id`, the signature must come from that key.

use serde_json::Value;

use super::Context;
use crate::appliance::Error;
use crate::pubkey;
use crate::views::{VerifiedView, to_value};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The signature: armored (-----BEGIN SSH SIGNATURE-----) or its base64 body.
    #[arg(long, allow_hyphen_values = true)]
    pub signature: String,
    /// The SSHSIG namespace it must have been made in.
    #[arg(long = "type", default_value = "git")]
    pub namespace: String,
    /// Require the signature to come from this key.
    #[arg(long)]
    pub key_id: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> Result<Value, Error> {
    let verified = ctx
        .appliance
        .verify(&args.namespace, &ctx.stdin, &args.signature)?;
    let key_id = verified.key.as_ref().map(|k| k.key_id.clone());
    if let Some(wanted) = args.key_id.filter(|wanted| key_id.as_ref() != Some(wanted)) {
        return Err(Error::WrongKey(wanted));
    }
    let public_key = verified.signature.public_key();
    Ok(to_value(&VerifiedView {
        valid: true,
        namespace: verified.signature.namespace().to_owned(),
        public_key: pubkey::openssh(public_key, key_id.as_deref().unwrap_or("")),
        fingerprint: pubkey::fingerprint(public_key),
        key_id,
        key_status: verified.key.as_ref().map(|k| k.status()),
    }))
}
