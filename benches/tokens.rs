//! Signatures a second with one token and with two, at equal concurrency.
//!
//! `cargo bench --bench tokens` (release build; an otherwise idle machine). Each token is a
//! SoftHSMv2 token opened with **one session**: a hardware token runs one command at a time (a
//! YubiHSM 2 signs about 8 times a second whatever the number of sessions), and one SoftHSM
//! session is the nearest software stand-in for that. Both setups are driven through the
//! appliance's own path to the token ([`sshsign::hsm::Token`]: its token threads, and the pool's
//! routing of each key to its token) by the same number of callers, each signing with its own
//! key, the keys spread over the tokens as the pool places them. It prints the rate of each, the
//! ratio of two tokens to one, and for reference the raw rate through `cryptoki` of one session
//! and of two sessions signing at once: SoftHSM signs on this machine's CPU, so two software
//! tokens can go no faster than two raw sessions, which is the ceiling the pool is held to here
//! (a hardware token signs off the host's CPU, and there the pool's ceiling is the devices').
//! `SSHSIGN_BENCH_SECONDS` sets the length of each measurement (default 2); each is repeated
//! `ROUNDS` times in alternation and the medians are printed.

#[path = "support/appliance.rs"]
mod appliance;
#[path = "support/proc_stat.rs"]
mod proc_stat;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use appliance::{RawToken, SERVER, median, seconds};
use sshsign::hsm::pkcs11::{Pkcs11Config, Pkcs11Hsm, module};
use sshsign::hsm::pool::TokenPool;
use sshsign::hsm::{Hsm, Token, TokenKey};
use sshsign::softhsm::SoftHsmStore;

/// Callers signing at once, in both setups.
const CALLERS: usize = 4;
const ROUNDS: usize = 3;

fn open(store: &SoftHsmStore, label: &str) -> Arc<dyn Hsm> {
    Arc::new(
        Pkcs11Hsm::open(Pkcs11Config::new(
            store.module.clone(),
            label.to_owned(),
            sshsign::secret::read_secret_file(&store.pin_file()).unwrap(),
            1,
        ))
        .unwrap(),
    )
}

/// Signatures a second: `CALLERS` tasks, each signing with its own key through `token`.
fn rate(runtime: &tokio::runtime::Runtime, token: &Token, keys: &[TokenKey]) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let duration = seconds();
    let started = Instant::now();
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for key in keys.iter().take(CALLERS).cloned() {
            let (token, count) = (token.clone(), Arc::clone(&count));
            tasks.spawn(async move {
                while started.elapsed() < duration {
                    let id = key.object_id.clone();
                    token
                        .call(move |hsm| hsm.sign(&id, appliance::PAYLOAD))
                        .await
                        .unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    if appliance::listing_only() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store =
        SoftHsmStore::create(&dir.path().join("hsm"), "bench-1", Path::new(SERVER)).unwrap();
    // SAFETY: single-threaded here, before the PKCS#11 module is loaded in this process.
    unsafe { std::env::set_var("SOFTHSM2_CONF", store.conf()) };
    let ctx = module::load(&store.module).unwrap();
    let so_pin = sshsign::secret::read_secret_file(&store.so_pin_file()).unwrap();
    let pin = sshsign::secret::read_secret_file(&store.pin_file()).unwrap();
    module::init_token(&ctx, module::InitSlot::FirstFree, "bench-2", &so_pin, &pin).unwrap();

    let first = open(&store, "bench-1");
    let second = open(&store, "bench-2");
    let one = Token::new(Arc::clone(&first)).unwrap();
    let one_keys: Vec<_> = (0..CALLERS)
        .map(|n| first.generate_ed25519(&format!("one-{n}")).unwrap())
        .collect();
    let pool = Arc::new(TokenPool::new(vec![first, second]).unwrap());
    let two = Token::new(pool.clone()).unwrap();
    let two_keys: Vec<_> = (0..CALLERS)
        .map(|n| pool.generate_ed25519(&format!("two-{n}")).unwrap())
        .collect();
    let raw = RawToken::open(&store, 1);
    let raw_two = RawToken::open(&store, 2);
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let (mut raws, mut raw_twos, mut ones, mut twos) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        raws.push(raw.rate(seconds()));
        raw_twos.push(raw_two.rate(seconds()));
        ones.push(rate(&runtime, &one, &one_keys));
        twos.push(rate(&runtime, &two, &two_keys));
    }
    let (raw, raw_two, one, two) = (median(raws), median(raw_twos), median(ones), median(twos));
    println!(
        "tokens: {CALLERS} callers, SoftHSMv2 tokens of one session each, {:.0} s a measurement, \
         medians of {ROUNDS}",
        seconds().as_secs_f64()
    );
    println!("  raw, one session through cryptoki: {raw:>8.0} signatures/s");
    println!(
        "  raw, two sessions at once:         {raw_two:>8.0} signatures/s  ({:.2} of one)",
        raw_two / raw
    );
    println!(
        "  one token through the appliance:   {one:>8.0} signatures/s  ({:.2} of raw)",
        one / raw
    );
    println!(
        "  two tokens through the appliance:  {two:>8.0} signatures/s  ({:.2} of raw)",
        two / raw
    );
    println!("  two tokens / one token:            {:>8.2}", two / one);
    println!(
        "  two tokens / two raw sessions:     {:>8.2}  (the pool against this CPU's ceiling)",
        two / raw_two
    );
}
