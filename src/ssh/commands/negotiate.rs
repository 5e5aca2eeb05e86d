//! `log-offer` and `history`, with the seed's flags.

use serde_json::{Map, Value};

use super::{Context, json_object};
use crate::appliance::{Error, MAX_METADATA};
use crate::negotiation::{OfferRecord, OfferType, Proposal};
use crate::views::{HistoryView, LoggedOffer, NegotiationView, OfferView, to_value};

#[derive(Debug, clap::Args)]
pub struct LogOfferArgs {
    /// The negotiation (neg_...); leave it out on round 0 to start a new one, whose id the
    /// appliance assigns.
    #[arg(long)]
    pub negotiation_id: Option<String>,
    /// The round, counting offers from 0.
    #[arg(long)]
    pub round: u64,
    /// The party you speak for.
    #[arg(long)]
    pub from: String,
    #[arg(long = "type", value_enum)]
    pub offer_type: OfferType,
    /// The terms offered: a JSON object.
    #[arg(long)]
    pub metadata: Option<String>,
    /// The hash of the offer you answer; refused if another offer came in first.
    #[arg(long)]
    pub previous_hash: Option<String>,
}

pub async fn log_offer(args: LogOfferArgs, ctx: &Context) -> Result<Value, Error> {
    let invalid = |m: String| Error::InvalidArgument(m);
    let negotiation_id = args.negotiation_id.unwrap_or_default();
    let valid_id = negotiation_id.strip_prefix("neg_").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 64
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if !negotiation_id.is_empty() && !valid_id {
        return Err(invalid(
            "--negotiation-id is neg_ followed by up to 64 letters, digits, _ or -".into(),
        ));
    }
    if negotiation_id.is_empty() && args.round != 0 {
        return Err(invalid("--negotiation-id is needed after round 0".into()));
    }
    if args.from.is_empty() || args.from.len() > 64 {
        return Err(invalid("--from is a party name of 1 to 64 bytes".into()));
    }
    let metadata = match &args.metadata {
        Some(text) => json_object("--metadata", text, MAX_METADATA)?,
        None => Map::new(),
    };
    let proposal = Proposal {
        negotiation_id,
        round: args.round,
        from: args.from,
        offer_type: args.offer_type,
        metadata,
        previous_hash: args.previous_hash,
    };
    let (negotiation, offer) = ctx.appliance.log_offer(&ctx.caller, proposal).await?;
    Ok(to_value(&LoggedOffer {
        offer: OfferView::from(&offer),
        negotiation: NegotiationView::from(&negotiation),
    }))
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The negotiation (neg_...).
    #[arg(long)]
    pub negotiation_id: String,
    #[command(flatten)]
    pub page: super::PageArgs,
}

pub fn history(args: HistoryArgs, ctx: &Context) -> Result<Value, Error> {
    let (negotiation, offers, next) =
        ctx.appliance
            .history(&ctx.caller, &args.negotiation_id, args.page.page()?)?;
    Ok(to_value(&HistoryView {
        negotiation: NegotiationView::from(&negotiation),
        offers: offers.iter().map(OfferView::from).collect(),
        chain_intact: offers.iter().all(OfferRecord::hash_holds),
        next,
    }))
}
