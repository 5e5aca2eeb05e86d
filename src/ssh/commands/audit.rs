//! `audit-checkpoint`, `audit-proof --index N [--size S]`, `audit-consistency --from M [--to N]`,
//! `audit-entries [--from N | --before N] [--limit L]`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use super::Context;
use crate::appliance::Error;
use crate::views::{CheckpointView, EntryList, IndexedEntry, ProofView, to_value};

pub async fn checkpoint(ctx: &Context) -> Result<Value, Error> {
    let (checkpoint, note) = ctx.appliance.audit_checkpoint().await?;
    Ok(to_value(&CheckpointView {
        origin: checkpoint.origin,
        size: checkpoint.size,
        root: BASE64.encode(checkpoint.root),
        checkpoint: note,
        verifier_key: ctx.appliance.audit_verifier_key(),
        handovers: ctx.appliance.audit_handovers(),
        cosigner_key: ctx.appliance.audit_cosigner_key(),
    }))
}

#[derive(Debug, clap::Args)]
pub struct ProofArgs {
    /// The entry.
    #[arg(long)]
    pub index: u64,
    /// The checkpoint's tree size to prove against (default: the latest).
    #[arg(long)]
    pub size: Option<u64>,
}

pub async fn proof(args: ProofArgs, ctx: &Context) -> Result<Value, Error> {
    let proof = ctx
        .appliance
        .audit_proof(&ctx.caller, args.index, args.size)
        .await?;
    Ok(to_value(&ProofView {
        proof,
        verifier_key: ctx.appliance.audit_verifier_key(),
        handovers: ctx.appliance.audit_handovers(),
    }))
}

#[derive(Debug, clap::Args)]
pub struct ConsistencyArgs {
    /// The older tree size (one you saw in a checkpoint).
    #[arg(long)]
    pub from: u64,
    /// The newer checkpoint's tree size (default: the latest).
    #[arg(long)]
    pub to: Option<u64>,
}

pub async fn consistency(args: ConsistencyArgs, ctx: &Context) -> Result<Value, Error> {
    let proof = ctx.appliance.audit_consistency(args.from, args.to).await?;
    Ok(to_value(&ProofView {
        proof,
        verifier_key: ctx.appliance.audit_verifier_key(),
        handovers: ctx.appliance.audit_handovers(),
    }))
}

#[derive(Debug, clap::Args)]
pub struct EntriesArgs {
    /// The first index to look at.
    #[arg(long, default_value_t = 0, conflicts_with = "before")]
    pub from: u64,
    /// Newest first, from the entry before this index back (`next` goes on further back).
    #[arg(long)]
    pub before: Option<u64>,
    /// How many entries at most (up to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

pub fn entries(args: EntriesArgs, ctx: &Context) -> Result<Value, Error> {
    let (entries, next) = match args.before {
        Some(before) => ctx
            .appliance
            .audit_entries_before(&ctx.caller, before, args.limit)?,
        None => ctx
            .appliance
            .audit_entries(&ctx.caller, args.from, args.limit)?,
    };
    let entries = entries
        .into_iter()
        .map(|(index, entry)| IndexedEntry { index, entry })
        .collect();
    Ok(to_value(&EntryList { entries, next }))
}
