//! The negotiation rules, turn by turn.

use serde_json::json;

use super::*;

fn proposal(round: u64, from: &str, offer_type: OfferType) -> Proposal {
    Proposal {
        negotiation_id: "neg_test".into(),
        round,
        from: from.into(),
        offer_type,
        metadata: json!({"valuation_cap": 12000000 - round * 1000000})
            .as_object()
            .unwrap()
            .clone(),
        previous_hash: None,
    }
}

/// Plays offers in order; returns the final state and every recorded offer.
fn play(steps: &[(u64, &str, OfferType, &str)]) -> (NegotiationRecord, Vec<OfferRecord>) {
    let mut state: Option<NegotiationRecord> = None;
    let mut offers = Vec::new();
    for (round, from, offer_type, speaker) in steps {
        let (next, offer) = apply(
            state.as_ref(),
            &proposal(*round, from, *offer_type),
            speaker,
            100 + *round as i64,
        )
        .unwrap_or_else(|refusal| panic!("round {round}: {refusal}"));
        state = Some(next);
        offers.push(offer);
    }
    (state.unwrap(), offers)
}

#[test]
fn a_negotiation_alternates_chains_and_closes() {
    let (state, offers) = play(&[
        (0, "founder", OfferType::Offer, "usr_f"),
        (1, "investor", OfferType::Counter, "usr_i"),
        (2, "founder", OfferType::Counter, "usr_f"),
        (3, "investor", OfferType::Accept, "usr_i"),
    ]);
    assert_eq!(state.status, NegotiationStatus::Accepted);
    assert_eq!(state.next_round, 4);
    assert_eq!(offers[0].previous_hash, None);
    for pair in offers.windows(2) {
        assert_eq!(
            pair[1].previous_hash.as_deref(),
            Some(pair[0].hash.as_str())
        );
    }
    assert!(offers.iter().all(OfferRecord::hash_holds));
    assert_eq!(state.head, offers[3].hash);

    let mut edited = offers[1].clone();
    edited.metadata.insert("valuation_cap".into(), json!(1));
    assert!(!edited.hash_holds());

    let after = apply(
        Some(&state),
        &proposal(4, "founder", OfferType::Counter),
        "usr_f",
        200,
    );
    assert_eq!(after.unwrap_err(), Refusal::Closed("accepted"));
}

#[test]
fn refusals() {
    let (opened, _) = play(&[(0, "founder", OfferType::Offer, "usr_f")]);
    let (two, offers) = play(&[
        (0, "founder", OfferType::Offer, "usr_f"),
        (1, "investor", OfferType::Counter, "usr_i"),
    ]);
    let cases: Vec<(&str, Option<&NegotiationRecord>, Proposal, &str, &str)> = vec![
        (
            "unknown negotiation",
            None,
            proposal(3, "founder", OfferType::Counter),
            "usr_f",
            "unknown_negotiation",
        ),
        (
            "opening with a counter",
            None,
            proposal(0, "founder", OfferType::Counter),
            "usr_f",
            "invalid_argument",
        ),
        (
            "the same party twice",
            Some(&opened),
            proposal(1, "founder", OfferType::Counter),
            "usr_f",
            "not_your_turn",
        ),
        (
            "speaking for the other side",
            Some(&opened),
            proposal(1, "investor", OfferType::Counter),
            "usr_f",
            "not_a_party",
        ),
        (
            "a third party",
            Some(&two),
            proposal(2, "lawyer", OfferType::Counter),
            "usr_l",
            "not_a_party",
        ),
        (
            "someone else speaking for a bound party",
            Some(&two),
            proposal(2, "founder", OfferType::Counter),
            "usr_x",
            "not_a_party",
        ),
        (
            "a wrong round",
            Some(&two),
            proposal(5, "founder", OfferType::Counter),
            "usr_f",
            "wrong_round",
        ),
        (
            "a replayed round",
            Some(&two),
            proposal(1, "founder", OfferType::Counter),
            "usr_f",
            "wrong_round",
        ),
        (
            "a fresh offer mid-way",
            Some(&two),
            proposal(2, "founder", OfferType::Offer),
            "usr_f",
            "invalid_argument",
        ),
        (
            "a stale head",
            Some(&two),
            Proposal {
                previous_hash: Some(offers[0].hash.clone()),
                ..proposal(2, "founder", OfferType::Counter)
            },
            "usr_f",
            "stale_head",
        ),
    ];
    for (name, state, proposal, speaker, code) in cases {
        let refusal = apply(state, &proposal, speaker, 300).expect_err(name);
        assert_eq!(refusal.code(), code, "{name}: {refusal}");
    }
    // Naming the current head is accepted.
    let named = Proposal {
        previous_hash: Some(offers[1].hash.clone()),
        ..proposal(2, "founder", OfferType::Counter)
    };
    apply(Some(&two), &named, "usr_f", 300).unwrap();
}

#[test]
fn of_two_offers_on_one_head_only_the_first_applies() {
    let (two, _) = play(&[
        (0, "founder", OfferType::Offer, "usr_f"),
        (1, "investor", OfferType::Counter, "usr_i"),
    ]);
    let (after_first, _) = apply(
        Some(&two),
        &proposal(2, "founder", OfferType::Counter),
        "usr_f",
        400,
    )
    .unwrap();
    // The second, computed against the same head, is refused once the first is in.
    let second = apply(
        Some(&after_first),
        &proposal(2, "founder", OfferType::Accept),
        "usr_f",
        401,
    );
    assert!(second.is_err());
}
