//! Negotiation logs over SSH, with the seed's commands and flags.

use serde_json::Value;

use crate::common::{Appliance, User};

fn offer(user: &User, flags: &str) -> crate::common::Reply {
    user.cmd(&format!("log-offer {flags}"))
}

#[test]
fn two_parties_negotiate_turn_by_turn_and_only_they_read_it() {
    let appliance = Appliance::start();
    let founder = appliance.user("founder");
    let investor = appliance.user("investor");
    let outsider = appliance.user("outsider");

    let opened = offer(
        &founder,
        r#"--round 0 --from founder --type offer --metadata {"valuation_cap": 12000000}"#,
    );
    let id = opened.ok()["negotiation_id"].as_str().unwrap().to_owned();
    let head0 = opened.json["hash"].as_str().unwrap().to_owned();
    assert!(id.starts_with("neg_"));
    let countered = offer(
        &investor,
        &format!(
            r#"--negotiation-id {id} --round 1 --from investor --type counter --previous-hash {head0} --metadata {{"valuation_cap": 9000000}}"#
        ),
    );
    assert_eq!(countered.ok()["previous_hash"], head0.as_str());
    offer(&founder, &format!(r#"--negotiation-id {id} --round 2 --from founder --type counter --metadata {{"valuation_cap": 10500000}}"#)).ok();
    let accepted = offer(
        &investor,
        &format!("--negotiation-id {id} --round 3 --from investor --type accept"),
    );
    assert_eq!(accepted.ok()["negotiation"]["status"], "accepted");

    for party in [&founder, &investor] {
        let history = party.cmd(&format!("history --negotiation-id {id}"));
        let offers = history.ok()["offers"].as_array().unwrap();
        assert_eq!(offers.len(), 4);
        assert_eq!(history.json["chain_intact"], true);
        let rounds: Vec<u64> = offers
            .iter()
            .map(|o| o["round"].as_u64().unwrap())
            .collect();
        assert_eq!(rounds, [0, 1, 2, 3]);
        for pair in offers.windows(2) {
            assert_eq!(pair[1]["previous_hash"], pair[0]["hash"]);
        }
        assert_eq!(offers[2]["metadata"]["valuation_cap"], 10500000);
    }
    outsider
        .cmd(&format!("history --negotiation-id {id}"))
        .failed_with("not_a_party");
    offer(
        &founder,
        &format!("--negotiation-id {id} --round 4 --from founder --type counter"),
    )
    .failed_with("negotiation_closed");

    // Every offer is an audit entry, naming the offer's hash.
    let entries = founder.cmd("audit-entries --limit 1000");
    let hashes: Vec<Value> = entries.ok()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["action"] == "offer" && e["entry"]["result"] == "recorded")
        .map(|e| e["entry"]["offer_hash"].clone())
        .collect();
    assert_eq!(hashes.len(), 4, "{entries:?}");
    assert_eq!(hashes[0], head0.as_str());
}

#[test]
fn turns_rounds_parties_and_heads_are_enforced() {
    let appliance = Appliance::start();
    let founder = appliance.user("founder");
    let investor = appliance.user("investor");
    let lawyer = appliance.user("lawyer");
    let opened = offer(&founder, "--round 0 --from founder --type offer");
    let id = opened.ok()["negotiation_id"].as_str().unwrap().to_owned();
    let head0 = opened.json["hash"].as_str().unwrap().to_owned();

    let n = |flags: &str| format!("--negotiation-id {id} {flags}");
    offer(&founder, &n("--round 1 --from founder --type counter")).failed_with("not_your_turn");
    offer(&investor, &n("--round 1 --from founder --type counter")).failed_with("not_a_party");
    offer(&investor, &n("--round 5 --from investor --type counter")).failed_with("wrong_round");
    offer(
        &investor,
        &n("--round 1 --from investor --type counter --previous-hash 00ff"),
    )
    .failed_with("stale_head");
    let second = offer(
        &investor,
        &n(&format!(
            "--round 1 --from investor --type counter --previous-hash {head0}"
        )),
    );
    second.ok();
    // A replay of the same offer is refused: the round has moved on.
    offer(
        &investor,
        &n(&format!(
            "--round 1 --from investor --type counter --previous-hash {head0}"
        )),
    )
    .failed_with("not_your_turn");
    offer(
        &founder,
        &n(&format!(
            "--round 2 --from founder --type counter --previous-hash {head0}"
        )),
    )
    .failed_with("stale_head");
    offer(&lawyer, &n("--round 2 --from lawyer --type counter")).failed_with("not_a_party");
    offer(
        &founder,
        "--negotiation-id neg_unknown --round 3 --from founder --type counter",
    )
    .failed_with("unknown_negotiation");
    // Nobody names a new negotiation: an id chosen ahead, to be squatted, is refused, and the
    // refusal is not a negotiation someone else could join.
    let squatted = offer(
        &lawyer,
        "--negotiation-id neg_founders_safe --round 0 --from founder --type offer",
    );
    assert!(
        squatted
            .failed_with("unknown_negotiation")
            .contains("without --negotiation-id")
    );
    offer(
        &founder,
        "--negotiation-id neg_founders_safe --round 0 --from founder --type offer",
    )
    .failed_with("unknown_negotiation");
    offer(&founder, &n("--round 2 --from founder --type bargain")).failed_with("invalid_usage");
    offer(
        &founder,
        "--negotiation-id bad-id --round 0 --from founder --type offer",
    )
    .failed_with("invalid_argument");
    let huge = format!(
        r#"--round 2 --from founder --type counter --metadata {{"x": "{}"}}"#,
        "y".repeat(70_000)
    );
    offer(&founder, &n(&huge)).failed_with("invalid_argument");
    // After all that, the negotiation is where it should be.
    let history = founder.cmd(&format!("history --negotiation-id {id}"));
    assert_eq!(history.ok()["negotiation"]["next_round"], 2);
}

#[test]
fn of_two_offers_racing_on_one_head_exactly_one_is_recorded() {
    let appliance = Appliance::start();
    let founder = appliance.user("founder");
    let investor = appliance.user("investor");
    let opened = offer(&founder, "--round 0 --from founder --type offer");
    let id = opened.ok()["negotiation_id"].as_str().unwrap().to_owned();
    let head = opened.json["hash"].as_str().unwrap().to_owned();
    let racers: Vec<_> = (0..6)
        .map(|n| {
            let (investor, id, head) = (investor.clone(), id.clone(), head.clone());
            std::thread::spawn(move || {
                let kind = if n % 2 == 0 { "counter" } else { "accept" };
                offer(&investor, &format!("--negotiation-id {id} --round 1 --from investor --type {kind} --previous-hash {head}"))
            })
        })
        .collect();
    let replies: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let won = replies.iter().filter(|r| r.status == 0).count();
    assert_eq!(won, 1, "{replies:?}");
    let history = founder.cmd(&format!("history --negotiation-id {id}"));
    assert_eq!(history.ok()["offers"].as_array().unwrap().len(), 2);
}
