//! The approval pages in a real browser (headless Chromium with a virtual authenticator):
//! passkey enrollment through the SSH-printed link, approval and rejection with a passkey or a
//! TOTP code, login and the list of waiting requests; and the attacks the pages must refuse:
//! a page's address taken for a credential, guessed and replayed codes, cross-site POSTs,
//! someone else's authenticator.

use serde_json::{Value, json};

use crate::approvals::{api_key, create, status, user_id};
use crate::browser::Browser;
use crate::common::{Appliance, HttpReply, User, base32_decode};

/// Registers a passkey for `user` in `browser` through an `enroll passkey` link; returns the
/// link.
fn enroll_passkey(browser: &mut Browser, user: &User, label: &str) -> String {
    let reply = user.cmd("enroll passkey");
    let url = reply.ok()["enrollment_url"].as_str().unwrap().to_owned();
    assert!(
        reply.stderr.contains(&url),
        "the link is printed for the person: {}",
        reply.stderr
    );
    browser.open(&url);
    browser.eval(&format!(
        "document.getElementById('label').value = {}",
        json!(label)
    ));
    browser.click("#register");
    let message = browser.message();
    assert!(message.contains("registered"), "{message}");
    url
}

/// A TOTP secret enrolled and confirmed for `user`; returns the secret.
fn enroll_totp(user: &User) -> Vec<u8> {
    fresh_step();
    let reply = user.cmd("enroll totp --label phone");
    let uri = reply.ok()["otpauth_uri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    // The QR code is drawn for the person, on stderr.
    assert!(
        reply.stderr.contains('█') || reply.stderr.contains('▀'),
        "{}",
        reply.stderr
    );
    let secret = base32_decode(
        uri.split("secret=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap(),
    );
    // Unconfirmed, it does not count; a wrong first code does not confirm it.
    user.cmd("enroll totp --code 000000")
        .failed_with("authentication_failed");
    // Confirmed with the previous step's code (still in the window), so this step's is fresh.
    let confirmed = user.cmd(&format!("enroll totp --code {}", code_at(&secret, -1)));
    assert_eq!(confirmed.ok()["confirmed"], true);
    secret
}

/// Waits, if need be, until the current 30-second step has at least 15 seconds left, so a test
/// that reasons about "this step" and "the next" is not cut by a boundary.
fn fresh_step() {
    let into = sshsign::time::now().rem_euclid(30);
    if into > 15 {
        std::thread::sleep(std::time::Duration::from_secs((30 - into) as u64));
    }
}

/// The code `steps` steps from now.
fn code_at(secret: &[u8], steps: i64) -> String {
    let step = (sshsign::time::now() / 30 + steps) as u64;
    format!("{:06}", sshsign::approval::totp::code(secret, step))
}

fn approve_url(made: &Value) -> String {
    made["approval_url"].as_str().unwrap().to_owned()
}

#[test]
fn a_passkey_enrolled_over_ssh_approves_a_request_in_the_browser() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let mut browser = Browser::start();
    let enrollment = enroll_passkey(&mut browser, &alice, "laptop");
    browser.screenshot("enroll-passkey-done");
    let credentials = browser.credentials();
    assert_eq!(credentials.len(), 1);
    assert_eq!(credentials[0]["isResidentCredential"], true);
    let listed = alice.cmd("authenticators");
    let listed = &listed.ok()["authenticators"];
    assert_eq!(listed[0]["type"], "passkey");
    assert_eq!(listed[0]["label"], "laptop");

    let key = api_key(&alice, "approval:create,approval:read");
    let action = "Deploy v2.1.0 to production <now>";
    let made = create(
        &appliance,
        &key,
        json!({"action": action, "metadata": {"commit": "abc123", "env": "prod"}}),
    );
    let id = made["id"].as_str().unwrap().to_owned();
    browser.open(&approve_url(&made));
    // The page shows the request as it is, escaped.
    assert_eq!(browser.text("#action"), action);
    assert!(
        browser
            .text("#metadata")
            .as_str()
            .unwrap()
            .contains("abc123")
    );
    assert_eq!(browser.text("#status"), "pending");
    browser.screenshot("approve-pending");
    browser.decide("#approve-passkey", "Recorded: approved", "approved");
    browser.screenshot("approve-approved");

    let decided = status(&appliance, &key, &id);
    assert_eq!(decided["status"], "approved");
    assert_eq!(decided["decision"]["method"], "passkey");
    let (_, verified) = appliance.http_get(&format!("/api/v1/approvals/{id}/verify"));
    assert_eq!(verified["valid"], true);
    assert_eq!(verified["payload"]["method"], "passkey");
    assert_eq!(
        verified["payload"]["approver"],
        sshsign::approval::decision::short_hash(&user_id(&alice))
    );
    // The passkey's use is recorded.
    assert!(alice.cmd("authenticators").ok()["authenticators"][0]["last_used_at"].is_string());

    // Decided: opening the page again shows the outcome and offers no buttons.
    browser.open(&approve_url(&made));
    assert_eq!(browser.text("#status"), "approved");
    assert_eq!(
        browser.eval("document.querySelectorAll('button').length"),
        0
    );
    // The enrollment link is spent too.
    browser.open(&enrollment);
    assert_eq!(browser.text("h1"), "Link not valid");

    // A rejection with a reason, through the same passkey.
    let made = create(&appliance, &key, json!({"action": "Drop the users table"}));
    browser.open(&approve_url(&made));
    browser.type_into("#reason", "not without a backup");
    browser.decide("#reject-passkey", "Recorded: rejected", "rejected");
    let decided = status(&appliance, &key, made["id"].as_str().unwrap());
    assert_eq!(decided["decision"]["decision"], "rejected");
    assert_eq!(decided["votes"][0]["reason"], "not without a backup");

    // Removing the passkey over SSH stops it at once.
    let aut = listed[0]["id"].as_str().unwrap();
    alice.cmd(&format!("authenticator remove --id {aut}")).ok();
    let made = create(&appliance, &key, json!({"action": "one more"}));
    browser.open(&approve_url(&made));
    browser.click("#approve-passkey");
    let message = browser.message();
    assert!(
        message.contains("Not recorded") && message.contains("enroll passkey"),
        "{message}"
    );
}

#[test]
fn a_totp_code_decides_once() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let secret = enroll_totp(&alice);
    let key = api_key(&alice, "approval:create,approval:read");
    let mut browser = Browser::start();

    let made = create(
        &appliance,
        &key,
        json!({"action": "Rotate the signing key", "methods": ["totp"]}),
    );
    browser.open(&approve_url(&made));
    // Only the method the request allows is offered.
    assert_eq!(
        browser.eval("document.getElementById('approve-passkey') === null"),
        true
    );
    let code = code_at(&secret, 0);
    browser.type_into("#totp-code", &code);
    browser.screenshot("approve-totp");
    browser.decide("#approve-totp", "Recorded: approved", "approved");
    let decided = status(&appliance, &key, made["id"].as_str().unwrap());
    assert_eq!(decided["decision"]["method"], "totp");

    // The same code on another request is refused; the next one is accepted.
    let made = create(
        &appliance,
        &key,
        json!({"action": "Rotate again", "methods": ["totp"]}),
    );
    browser.open(&approve_url(&made));
    browser.type_into("#totp-code", &code);
    browser.click("#approve-totp");
    let message = browser.message();
    assert!(message.contains("already used"), "{message}");
    browser.open(&approve_url(&made));
    browser.type_into("#totp-code", &code_at(&secret, 1));
    browser.decide("#approve-totp", "Recorded: approved", "approved");
}

#[test]
fn a_request_an_agents_key_made_is_decided_by_its_person_on_the_page() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let alice_id = user_id(&alice);
    let secret = enroll_totp(&alice);
    let agent = appliance.user("alice-agent");
    let started = alice.cmd("link start --agent --label deployer");
    let code = started.ok()["code"].as_str().unwrap().to_owned();
    agent.cmd(&format!("link finish --code {code}")).ok();
    let key = alice.create_key("--scope deploy --tier cosign");

    let made = agent.run(&format!("sign --type deploy --key-id {key}"), b"release v3");
    let id = made.ok()["pending_id"].as_str().unwrap().to_owned();
    assert_eq!(made.json["principal"], alice_id.as_str());
    // Alice has it to decide, but no key of hers approves it over SSH.
    let pending = alice.cmd("pending");
    assert_eq!(pending.ok()["to_decide"][0]["pending_id"], id.as_str());
    assert_eq!(pending.json["to_decide"][0]["requested_by_agent"], true);
    alice
        .cmd(&format!("approve --id {id}"))
        .failed_with("self_approval");
    // On its page, her authenticator app decides.
    let decided = totp_attempt(&appliance, &id, &alice_id, &code_at(&secret, 0));
    assert_eq!(decided.status, 200, "{decided:?}");
    let envelope = agent.cmd(&format!("get-envelope --id {id}"));
    assert_eq!(envelope.ok()["status"], "approved");
    assert!(
        envelope.json["signature"].is_string(),
        "{:?}",
        envelope.json
    );

    // A request alice made with her own person's key still needs someone else.
    let own = alice.run(&format!("sign --type deploy --key-id {key}"), b"release v4");
    let own_id = own.ok()["pending_id"].as_str().unwrap().to_owned();
    let refused = totp_attempt(&appliance, &own_id, &alice_id, &code_at(&secret, 1));
    assert_ne!(refused.status, 200, "{refused:?}");
    assert_eq!(
        agent.cmd(&format!("get-envelope --id {own_id}")).ok()["status"],
        "pending"
    );
}

/// Logs `browser` in with its passkey on `/login`, and waits for the page it lands on.
fn log_in(browser: &mut Browser, appliance: &Appliance) {
    browser.open(&format!(
        "http://localhost:{}/login",
        appliance.http_addr.port()
    ));
    browser.mark_page();
    browser.click("#login");
    browser.wait_for_new_page();
}

/// A TOTP decision posted as a script would, with no browser and no session.
fn totp_attempt(appliance: &Appliance, id: &str, approver: &str, code: &str) -> HttpReply {
    appliance.http(
        "POST",
        &format!("/approve/{id}/decide"),
        &[("Content-Type", "application/json")],
        json!({"approver": approver, "decision": "approved", "method": "totp", "code": code})
            .to_string()
            .as_bytes(),
    )
}

#[test]
fn totp_guessing_is_cut_off_durably_audited_and_reopened_only_by_the_approver() {
    let mut appliance = Appliance::start();
    let alice = appliance.user("alice");
    let alice_id = user_id(&alice);
    let mut browser = Browser::start();
    enroll_passkey(&mut browser, &alice, "alice's laptop");
    let secret = enroll_totp(&alice);
    let key = api_key(&alice, "approval:create,approval:read");
    a_request_takes_three_wrong_codes_then_none(&appliance, &key, &alice_id, &secret);
    the_approver_takes_five_then_her_totp_closes(&appliance, &key, &alice_id);
    // Durably: a restart forgets nothing, and the right code is refused.
    appliance.restart();
    let alice = alice.at(&appliance);
    let (third, totp_id) =
        closed_totp_is_refused_shown_and_audited(&appliance, &alice, &key, &alice_id, &secret);
    her_passkey_still_decides_and_reopens_totp(
        &mut browser,
        &appliance,
        &key,
        &third,
        &alice_id,
        &secret,
    );
    thirty_wrong_codes_retire_it_for_good(&appliance, &alice, &key, &alice_id, &secret, &totp_id);
}

/// A new request, decided by passkey or TOTP.
fn ask(appliance: &Appliance, key: &str, action: &str) -> String {
    create(
        appliance,
        key,
        json!({"action": action, "methods": ["passkey", "totp"]}),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn a_request_takes_three_wrong_codes_then_none(
    appliance: &Appliance,
    key: &str,
    alice_id: &str,
    secret: &[u8],
) {
    // Whoever holds a request's address may try codes, but each request takes three wrong ones
    // and then no code at all, not even the right one.
    let first = ask(appliance, key, "Guess me");
    for _ in 0..3 {
        assert_eq!(
            totp_attempt(appliance, &first, alice_id, "000001").code(),
            "authentication_failed"
        );
    }
    let closed = totp_attempt(appliance, &first, alice_id, &code_at(secret, 0));
    assert_eq!((closed.status, closed.code()), (403, "request_totp_closed"));
    assert_eq!(status(appliance, key, &first)["totp_failures"], 3);
}

fn the_approver_takes_five_then_her_totp_closes(appliance: &Appliance, key: &str, alice_id: &str) {
    // The approver's own budget is five wrong codes, across requests; then TOTP closes for her.
    let second = ask(appliance, key, "Guess me again");
    assert_eq!(
        totp_attempt(appliance, &second, alice_id, "000002").code(),
        "authentication_failed"
    );
    let fifth = totp_attempt(appliance, &second, alice_id, "000003");
    assert_eq!((fifth.status, fifth.code()), (403, "totp_closed"));
}

/// After a restart: the closed secret refuses the right code, `authenticators` shows it closed
/// and the audit log has each wrong code. Returns a request still open and the secret's id.
fn closed_totp_is_refused_shown_and_audited(
    appliance: &Appliance,
    alice: &User,
    key: &str,
    alice_id: &str,
    secret: &[u8],
) -> (String, String) {
    let third = ask(appliance, key, "After the restart");
    let refused = totp_attempt(appliance, &third, alice_id, &code_at(secret, 0));
    assert_eq!(refused.code(), "totp_closed", "{:?}", refused.json);
    assert!(
        refused.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("authenticator reopen")
    );
    // Alice sees it in `authenticators`, and each wrong code in her audit entries.
    let listed = alice.cmd("authenticators");
    let totp = listed.ok()["authenticators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "totp")
        .unwrap()
        .clone();
    assert_eq!(totp["state"], "closed", "{totp}");
    assert_eq!(totp["wrong_codes"]["since_reopened"], 5);
    let entries = alice.cmd("audit-entries --limit 1000");
    let failed: Vec<&Value> = entries.ok()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["action"] == "totp_failed")
        .collect();
    assert_eq!(failed.len(), 5, "{}", entries.stdout);
    assert!(
        failed[0]["entry"]["reason"]
            .as_str()
            .unwrap()
            .contains("from 127.0.0.1")
    );
    (third, totp["id"].as_str().unwrap().to_owned())
}

fn her_passkey_still_decides_and_reopens_totp(
    browser: &mut Browser,
    appliance: &Appliance,
    key: &str,
    third: &str,
    alice_id: &str,
    secret: &[u8],
) {
    // Nobody locks her out of her passkey.
    browser.open(&format!(
        "http://localhost:{}/approve/{third}",
        appliance.http_addr.port()
    ));
    browser.decide("#approve-passkey", "Recorded: approved", "approved");
    // She reopens TOTP with her passkey, logged in, on /requests ...
    log_in(browser, appliance);
    browser.click("#reopen-totp");
    assert!(
        browser.message().contains("TOTP reopened"),
        "{}",
        browser.message()
    );
    let fourth = ask(appliance, key, "Reopened");
    let approved = totp_attempt(appliance, &fourth, alice_id, &code_at(secret, 1));
    assert_eq!(approved.json["status"], "approved", "{:?}", approved.json);
}

fn thirty_wrong_codes_retire_it_for_good(
    appliance: &Appliance,
    alice: &User,
    key: &str,
    alice_id: &str,
    secret: &[u8],
    totp_id: &str,
) {
    // ... or over SSH. Past thirty wrong codes in its life the secret is retired for good.
    let mut wrong = 5;
    while wrong < 30 {
        let id = ask(appliance, key, "Keep guessing");
        for _ in 0..3 {
            if wrong == 30 {
                break;
            }
            let reply = totp_attempt(appliance, &id, alice_id, "000004");
            wrong += 1;
            if reply.code() == "totp_closed" {
                alice
                    .cmd(&format!("authenticator reopen --id {}", totp_id))
                    .ok();
            }
        }
    }
    let retired = alice.cmd("authenticators");
    let state = retired.ok()["authenticators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "totp")
        .unwrap()["state"]
        .clone();
    assert_eq!(state, "retired");
    alice
        .cmd(&format!("authenticator reopen --id {}", totp_id))
        .failed_with("totp_retired");
    let last = ask(appliance, key, "Retired");
    assert_eq!(
        totp_attempt(appliance, &last, alice_id, &code_at(secret, 2)).code(),
        "totp_retired"
    );
}

#[test]
fn login_lists_what_waits_and_a_quorum_is_met_in_the_browser() {
    let appliance = Appliance::start();
    let (alice, bob) = (appliance.user("alice"), appliance.user("bob"));
    let mut alice_browser = Browser::start();
    let mut bob_browser = Browser::start();
    enroll_passkey(&mut alice_browser, &alice, "alice's laptop");
    enroll_passkey(&mut bob_browser, &bob, "bob's phone");
    bob.accept(&alice);
    let key = api_key(&alice, "approval:create,approval:read");
    let made = create(
        &appliance,
        &key,
        json!({"action": "Pay invoice 42", "approvers": [user_id(&alice), user_id(&bob)], "threshold": 2}),
    );
    let id = made["id"].as_str().unwrap().to_owned();
    let urls = made["approval_urls"].as_array().unwrap().clone();
    assert_eq!(urls.len(), 2);

    // Each approver's address is the page with their name: a pointer, nothing more.
    assert!(
        urls.iter().all(|u| u["url"]
            .as_str()
            .unwrap()
            .contains(&format!("?as={}", u["approver"].as_str().unwrap()))),
        "{urls:?}"
    );
    // Without a session the page shows the request and asks who decides; Bob logs in from it
    // (the login is a passkey) and comes back to decide as himself.
    let base = format!("http://localhost:{}", appliance.http_addr.port());
    bob_browser.open(&format!("{base}/approve/{id}"));
    assert!(
        bob_browser
            .text("#approvers")
            .as_str()
            .unwrap()
            .contains(&user_id(&bob))
    );
    assert_eq!(
        bob_browser.eval("document.querySelectorAll('#approver option').length"),
        2
    );
    bob_browser.mark_page();
    bob_browser.click("a[href^='/login']");
    bob_browser.wait_for_new_page();
    bob_browser.mark_page();
    bob_browser.click("#login");
    bob_browser.wait_for_new_page();
    assert_eq!(
        bob_browser.eval("location.pathname"),
        format!("/approve/{id}")
    );
    assert_eq!(bob_browser.text("#approver-name"), user_id(&bob).as_str());
    bob_browser.decide("#approve-passkey", "Recorded: pending", "pending");
    assert_eq!(status(&appliance, &key, &id)["status"], "pending");

    // Alice logs in and finds it in her list; her approval meets the threshold.
    alice_browser.open(&format!("{base}/login"));
    alice_browser.mark_page();
    alice_browser.click("#login");
    alice_browser.wait_for_new_page();
    assert_eq!(alice_browser.eval("location.pathname"), "/requests");
    assert!(
        alice_browser
            .text("#requests")
            .as_str()
            .unwrap()
            .contains("Pay invoice 42")
    );
    alice_browser.screenshot("requests-list");
    alice_browser.mark_page();
    alice_browser.click(&format!("a[href='/approve/{id}']"));
    alice_browser.wait_for_new_page();
    alice_browser.decide("#approve-passkey", "Recorded: approved", "approved");
    let decided = status(&appliance, &key, &id);
    assert_eq!(decided["status"], "approved");
    assert_eq!(decided["votes"].as_array().unwrap().len(), 2);
    // Nothing waits for either of them now.
    alice_browser.open(&format!("{base}/requests"));
    assert!(
        alice_browser
            .text("#requests")
            .as_str()
            .unwrap()
            .contains("Nothing waits")
    );
}

#[test]
fn the_pages_refuse_replays_cross_site_posts_and_other_peoples_authenticators() {
    let appliance = Appliance::start();
    let (alice, bob) = (appliance.user("alice"), appliance.user("bob"));
    let mut browser = Browser::start();
    enroll_passkey(&mut browser, &bob, "bob's laptop");
    let bob_secret = enroll_totp(&bob);
    let key = api_key(&alice, "approval:create,approval:read");
    let made = create(&appliance, &key, json!({"action": "Alice's deploy"}));
    let id = made["id"].as_str().unwrap().to_owned();
    let url = approve_url(&made);
    assert!(
        url.ends_with(&format!("/approve/{id}?as={}", user_id(&alice))),
        "{url}"
    );
    another_user_holding_the_page_cannot_decide(
        &mut browser,
        &appliance,
        &bob,
        &bob_secret,
        &key,
        &id,
        &url,
    );
    unknown_or_old_addresses_open_nothing_and_get_changes_nothing(&appliance, &key, &id);
    cross_site_and_form_posts_are_refused(&appliance, &key, &id);
    an_assertion_is_bound_to_its_prompt_and_used_once(&appliance, &alice, &key, &id, &url);
}

fn another_user_holding_the_page_cannot_decide(
    browser: &mut Browser,
    appliance: &Appliance,
    bob: &User,
    bob_secret: &[u8],
    key: &str,
    id: &str,
    url: &str,
) {
    // Bob, holding Alice's page, cannot decide with his passkey or his code.
    browser.open(url);
    browser.click("#approve-passkey");
    assert!(browser.message().contains("Not recorded"));
    browser.open(url);
    browser.type_into("#totp-code", &code_at(bob_secret, 0));
    browser.click("#approve-totp");
    assert!(browser.message().contains("Not recorded"));
    // Naming himself as the approver does not help: he is not one.
    let posed = totp_attempt(appliance, id, &user_id(bob), &code_at(bob_secret, 1));
    assert_eq!(posed.code(), "authentication_failed", "{:?}", posed.json);
    // Logged in as himself, he sees the request but may not decide it.
    log_in(browser, appliance);
    assert_eq!(browser.eval("location.pathname"), "/requests");
    browser.open(url);
    assert!(
        browser
            .text("#closed")
            .as_str()
            .unwrap()
            .contains("logged in as someone else")
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('button[data-decision]').length"),
        0
    );
    assert_eq!(status(appliance, key, id)["status"], "pending");
}

fn unknown_or_old_addresses_open_nothing_and_get_changes_nothing(
    appliance: &Appliance,
    key: &str,
    id: &str,
) {
    // An unknown request shows nothing; an old-style token in the address opens nothing.
    for bad in [
        "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "pnd_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "x",
    ] {
        let page = appliance.http("GET", &format!("/approve/{bad}?token=AAAA"), &[], b"");
        assert_eq!(page.status, 404, "{bad}");
        assert!(!String::from_utf8_lossy(&page.body).contains("Alice's deploy"));
    }
    let old_style = appliance.http(
        "POST",
        &format!("/approve/{id}/decide"),
        &[("Content-Type", "application/json")],
        json!({"token": "AAAA", "decision": "approved", "method": "totp", "code": "123456"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(old_style.status, 400, "{:?}", old_style.json);
    // GET changes nothing, however often.
    for _ in 0..3 {
        let page = appliance.http("GET", &format!("/approve/{id}"), &[], b"");
        assert_eq!(page.status, 200);
        // The template engine leaves an apostrophe in text as it is (it is not markup there);
        // what it must escape is checked in `web::pages::html`.
        assert!(String::from_utf8_lossy(&page.body).contains("Alice's deploy"));
    }
    assert_eq!(status(appliance, key, id)["status"], "pending");
}

fn cross_site_and_form_posts_are_refused(appliance: &Appliance, key: &str, id: &str) {
    // Cross-site POSTs are refused before anything else is looked at.
    let body = json!({"decision": "approved"}).to_string();
    for headers in [
        vec![
            ("Origin", "http://evil.example"),
            ("Content-Type", "application/json"),
        ],
        vec![
            ("Sec-Fetch-Site", "cross-site"),
            ("Content-Type", "application/json"),
        ],
    ] {
        let refused = appliance.http(
            "POST",
            &format!("/approve/{id}/options"),
            &headers,
            body.as_bytes(),
        );
        assert_eq!((refused.status, refused.code()), (403, "cross_origin"));
    }
    // A form post (the only cross-site POST without a preflight) is not JSON: refused.
    let form = appliance.http(
        "POST",
        &format!("/approve/{id}/decide"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"decision=approved",
    );
    assert_eq!(form.status, 415);
    assert_eq!(status(appliance, key, id)["status"], "pending");
}

fn an_assertion_is_bound_to_its_prompt_and_used_once(
    appliance: &Appliance,
    alice: &User,
    key: &str,
    id: &str,
    url: &str,
) {
    // An assertion is bound to its prompt: one made for a rejection cannot approve.
    let alice_browser_passkey = {
        let mut alice_browser = Browser::start();
        enroll_passkey(&mut alice_browser, alice, "alice");
        alice_browser.open(url);
        alice_browser.eval(&format!(
            "(async () => {{
                const post = (p, b) => fetch(p, {{method: 'POST', headers: {{'Content-Type': 'application/json'}},
                    body: JSON.stringify(b)}}).then(async r => [r.status, await r.json()]);
                const [, asked] = await post('/approve/{id}/options', {{decision: 'rejected'}});
                const options = asked.options.publicKey;
                const decode = s => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), c => c.charCodeAt(0));
                options.challenge = decode(options.challenge);
                for (const c of options.allowCredentials) c.id = decode(c.id);
                const cred = await navigator.credentials.get({{publicKey: options}});
                const enc = b => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
                const credential = {{id: cred.id, rawId: enc(cred.rawId), type: cred.type, extensions: {{}},
                    response: {{authenticatorData: enc(cred.response.authenticatorData),
                        clientDataJSON: enc(cred.response.clientDataJSON), signature: enc(cred.response.signature),
                        userHandle: cred.response.userHandle ? enc(cred.response.userHandle) : null}}}};
                const swapped = await post('/approve/{id}/decide', {{decision: 'approved', method: 'passkey',
                    ceremony: asked.ceremony, credential}});
                const replayed = await post('/approve/{id}/decide', {{decision: 'rejected', method: 'passkey',
                    ceremony: asked.ceremony, credential}});
                return [swapped, replayed];
            }})()"
        ))
    };
    let (swapped, replayed) = (&alice_browser_passkey[0], &alice_browser_passkey[1]);
    assert_eq!(swapped[0], 401, "{swapped}");
    assert_eq!(swapped[1]["error"]["code"], "authentication_failed");
    // The prompt was used up by the refused attempt: replaying it fails too.
    assert_eq!(replayed[0], 401, "{replayed}");
    assert_eq!(status(appliance, key, id)["status"], "pending");
}

/// A human's key granted to an agent in the cosign tier with a drawn signature required, and
/// a negotiation between them that the agent's request names.
struct Cosign {
    appliance: Appliance,
    human: User,
    agent: User,
    key: String,
    public_key: String,
    pending_id: String,
    url: String,
    investor_id: String,
}

const SAFE: &[u8] = b"SAFE: valuation cap 10,500,000; discount 20%";

fn cosign_request() -> Cosign {
    let appliance = Appliance::start();
    let human = appliance.user("founder");
    let agent = appliance.user("agent");
    let agent_id = user_id(&agent);
    agent.accept(&human);
    let created = human.cmd("create-key --scope safe-agreement");
    let key = created.ok()["key_id"].as_str().unwrap().to_owned();
    let public_key = created.json["public_key"].as_str().unwrap().to_owned();
    human
        .cmd(&format!(
            r#"authorize --key-id {key} --scope safe-agreement --tier cosign --grantee {agent_id} --require-signature --constraints {{"valuation_cap": {{"max": 12000000}}}}"#
        ))
        .ok();
    // The agent negotiated with an investor, who accepted the founder side's counter.
    let investor = appliance.user("investor");
    let opened = agent.cmd(
        r#"log-offer --round 0 --from founder --type offer --metadata {"valuation_cap": 12000000}"#,
    );
    let negotiation = opened.ok()["negotiation_id"].as_str().unwrap().to_owned();
    investor
        .cmd(&format!(r#"log-offer --negotiation-id {negotiation} --round 1 --from investor --type counter --metadata {{"valuation_cap": 9000000}}"#))
        .ok();
    agent
        .cmd(&format!(r#"log-offer --negotiation-id {negotiation} --round 2 --from founder --type counter --metadata {{"valuation_cap": 10500000}}"#))
        .ok();
    investor
        .cmd(&format!(
            "log-offer --negotiation-id {negotiation} --round 3 --from investor --type accept"
        ))
        .ok();
    let reply = agent.run(
        &format!(
            r#"sign --type safe-agreement --key-id {key} --metadata {{"valuation_cap": 10500000, "negotiation_id": "{negotiation}"}}"#
        ),
        SAFE,
    );
    let body = reply.ok();
    assert_eq!(body["status"], "pending_cosign");
    Cosign {
        pending_id: body["pending_id"].as_str().unwrap().to_owned(),
        url: body["approval_url"].as_str().unwrap().to_owned(),
        investor_id: user_id(&investor),
        appliance,
        human,
        agent,
        key,
        public_key,
    }
}

#[test]
fn a_drawn_signature_is_sealed_into_an_evidence_envelope_that_verifies_offline() {
    let c = cosign_request();
    let mut browser = Browser::start();
    enroll_passkey(&mut browser, &c.human, "founder's laptop");
    over_ssh_the_drawing_is_required(&c);
    bad_drawings_are_refused_before_a_code_is_spent(&c);
    browser.open(&c.url);
    let digest = the_page_shows_the_document_the_terms_and_the_range(&mut browser, &c);
    the_principal_draws_and_approves(&mut browser);
    let dir = tempfile::tempdir().unwrap();
    let (envelope, bytes) =
        the_agent_collects_a_signature_and_its_envelope(&c, dir.path(), &digest);
    the_envelope_verifies_offline_and_a_forgery_does_not(&c, dir.path(), &envelope, &bytes);
    let _ = &c.key;
}

/// A grayscale PNG of `width` × `height` `pixels`.
fn grayscale_png(width: u32, height: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(pixels).unwrap();
    writer.finish().unwrap();
    out
}

fn over_ssh_the_drawing_is_required(c: &Cosign) {
    // Over SSH the approval is refused: it needs the drawn signature.
    let refused = c.human.cmd(&format!("approve --id {}", c.pending_id));
    assert!(
        refused
            .failed_with("signature_required")
            .contains(&format!("/approve/{}", c.pending_id))
    );
}

fn bad_drawings_are_refused_before_a_code_is_spent(c: &Cosign) {
    // A drawing that is not a PNG, or has no ink, is refused before the code is spent.
    let secret = enroll_totp(&c.human);
    let code = code_at(&secret, 0);
    let approver = user_id(&c.human);
    use base64::Engine as _;
    let blank = grayscale_png(60, 20, &[255; 60 * 20]);
    // A detailed drawing is far larger than an API request may be, and still reaches the check
    // of the code (wrong here); one beyond what an envelope takes is refused unread.
    let noise = |width: u32, height: u32| {
        let mut state = 0x2545_f491_u32;
        let pixels: Vec<u8> = (0..width * height)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        grayscale_png(width, height, &pixels)
    };
    for ((width, height), expected) in [
        ((600, 200), (401, "authentication_failed")),
        ((700, 500), (413, "payload_too_large")),
    ] {
        let image = noise(width, height);
        let reply = c.appliance.http(
            "POST",
            &format!("/approve/{}/decide", c.pending_id),
            &[("Content-Type", "application/json")],
            json!({"approver": approver, "decision": "approved", "method": "totp", "code": "000000",
                   "signature_png": base64::engine::general_purpose::STANDARD.encode(&image)})
            .to_string()
            .as_bytes(),
        );
        assert_eq!(
            (reply.status, reply.code()),
            expected,
            "{} bytes: {:?}",
            image.len(),
            reply.json
        );
    }
    for (image, needle) in [(b"not a png".to_vec(), "not a PNG"), (blank, "empty")] {
        let refused = c.appliance.http(
            "POST",
            &format!("/approve/{}/decide", c.pending_id),
            &[("Content-Type", "application/json")],
            json!({"approver": approver, "decision": "approved", "method": "totp", "code": code,
                   "signature_png": base64::engine::general_purpose::STANDARD.encode(&image)})
            .to_string()
            .as_bytes(),
        );
        assert_eq!(refused.status, 400, "{:?}", refused.json);
        assert!(
            refused.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains(needle)
        );
    }
}

/// Checks what the page shows; returns the document's SHA-512, hex.
fn the_page_shows_the_document_the_terms_and_the_range(
    browser: &mut Browser,
    c: &Cosign,
) -> String {
    // The page shows the document, the agreed terms and the authorized range.
    assert_eq!(browser.text("#document"), "safe-agreement");
    let digest = sshsign::hex::encode(&<sha2::Sha512 as sha2::Digest>::digest(SAFE));
    assert_eq!(browser.text("#payload-hash"), digest.as_str());
    let standing = browser.text("#terms-standing");
    // Who spoke for each party is an identity, not the name a party gave itself.
    assert!(
        standing.as_str().unwrap().contains(&format!(
            "accepted by investor (spoken for by {}) in round 3",
            c.investor_id
        )),
        "{standing}"
    );
    assert!(
        standing
            .as_str()
            .unwrap()
            .contains("the requester of this signature"),
        "the founder side was spoken for by the agent itself: {standing}"
    );
    assert!(
        browser
            .text("#terms")
            .as_str()
            .unwrap()
            .contains("10500000")
    );
    assert!(
        browser
            .text("#authorized")
            .as_str()
            .unwrap()
            .contains("12000000")
    );
    // A SAFE is a legal agreement: the disclosure stands above the buttons.
    assert!(
        browser
            .text("#disclosure")
            .as_str()
            .unwrap()
            .contains("electronic signature under the ESIGN Act"),
    );
    digest
}

fn the_principal_draws_and_approves(browser: &mut Browser) {
    // Approving without drawing is stopped in the page.
    browser.click("#approve-passkey");
    assert!(browser.message().contains("Draw your signature first"));
    browser.draw(
        "#signature-pad",
        &[
            (0.1, 0.6),
            (0.2, 0.3),
            (0.3, 0.7),
            (0.45, 0.35),
            (0.6, 0.65),
            (0.8, 0.4),
            (0.9, 0.5),
        ],
    );
    // Drawing clears the earlier prompt.
    assert_eq!(browser.text("#message"), "");
    browser.screenshot("cosign-signature-drawn");
    browser.decide("#approve-passkey", "Recorded: approved", "approved");
    browser.screenshot("cosign-approved");
}

/// The agent's `get-envelope` reply, and the envelope's exact bytes.
fn the_agent_collects_a_signature_and_its_envelope(
    c: &Cosign,
    dir: &std::path::Path,
    digest: &str,
) -> (crate::common::Reply, Vec<u8>) {
    use base64::Engine as _;
    // The agent collects the signature and the envelope.
    let envelope = c.agent.cmd(&format!("get-envelope --id {}", c.pending_id));
    let reply = envelope.ok();
    assert_eq!(reply["status"], "approved");
    let evidence = &reply["evidence"];
    assert!(evidence["seal"].is_string(), "{reply}");
    // The SSHSIG verifies with stock ssh-keygen.
    let checked = crate::common::ssh_keygen_verify(
        dir,
        "founder@example.com",
        &c.public_key,
        "safe-agreement",
        reply["signature"].as_str().unwrap(),
        SAFE,
    );
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    // Anyone can recompute the envelope's hash from its exact bytes.
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(evidence["envelope"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        evidence["sha256"],
        format!(
            "sha256:{}",
            sshsign::hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(&bytes))
        )
    );
    let opened: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(opened["decision"], "approved");
    assert_eq!(opened["signer"]["user_id"], user_id(&c.human).as_str());
    assert_eq!(opened["signer"]["method"], "passkey");
    assert_eq!(opened["signer_ip"], "127.0.0.1");
    assert_eq!(opened["payload_hash"], format!("sha512:{digest}"));
    assert_eq!(opened["metadata"]["valuation_cap"], 10500000);
    // The image is only in the envelope, not stored in the clear anywhere.
    let image = opened["signature_image"].as_str().unwrap();
    let found = c
        .appliance
        .stored_text(&[&image[..40], &image[image.len() - 40..]]);
    assert!(found.is_empty(), "{found:?}");
    (envelope, bytes)
}

fn the_envelope_verifies_offline_and_a_forgery_does_not(
    c: &Cosign,
    dir: &std::path::Path,
    envelope: &crate::common::Reply,
    bytes: &[u8],
) {
    use base64::Engine as _;
    // Offline: verify-envelope checks the seal, the hashes and the SSHSIG.
    let jwks_file = c.appliance.save_jwks(dir);
    let reply_file = crate::common::write_file(dir, "envelope.json", envelope.stdout.clone());
    let png = dir.join("signature.png");
    let verify = |file: &std::path::Path, extra: &[&str]| {
        crate::common::offline_check("verify-envelope", &jwks_file, extra, file)
    };
    let ok = verify(
        &reply_file,
        &[
            "--signer-key",
            &c.public_key,
            "--write-image",
            png.to_str().unwrap(),
        ],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let printed: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(printed["checked"].as_array().unwrap().len(), 5, "{printed}");
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    // One changed character anywhere in the envelope, or another signer key, is refused.
    let mut tampered: Value = serde_json::from_str(&envelope.stdout).unwrap();
    let forged = String::from_utf8(bytes.to_vec())
        .unwrap()
        .replace("127.0.0.1", "127.0.0.2");
    tampered["evidence"]["envelope"] = base64::engine::general_purpose::STANDARD
        .encode(forged)
        .into();
    let tampered_file = crate::common::write_file(dir, "tampered.json", tampered.to_string());
    let refused = verify(&tampered_file, &[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("envelope refused"));
    let other = c.human.cmd("create-key --scope other").ok()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !verify(&reply_file, &["--signer-key", &other])
            .status
            .success()
    );
}
