//! The audit log's costs: append rate with durability on (every append waits for its commit,
//! concurrent appends share one), start-up and the full check, and proof generation and
//! verification at a million entries.
//!
//! `cargo bench --bench audit`. `SSHSIGN_BENCH_ENTRIES` sets the log size (default 1,000,000).
//! `SSHSIGN_BENCH_DATABASE=postgres` puts the log in PostgreSQL, as appliances sharing a
//! database keep it (a cluster of the benchmark's own on this machine, over its Unix socket),
//! and adds the append rate of two appliances appending to it at once.

#[path = "support/proc_stat.rs"]
mod proc_stat;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sshsign::audit::merkle;
use sshsign::audit::{AuditEntry, AuditLog, CheckpointSigner};
use sshsign::hsm::Token;
use sshsign::hsm::pkcs11::{Pkcs11Config, Pkcs11Hsm};
use sshsign::softhsm::SoftHsmStore;

const SERVER: &str = env!("CARGO_BIN_EXE_sshsign-server");

fn entry(n: u64) -> AuditEntry {
    AuditEntry {
        time: 1_800_000_000 + n as i64,
        action: sshsign::audit::Action::Sign,
        result: sshsign::audit::Outcome::Signed,
        actor: "usr_benchbenchbenchbenchbenchbe".into(),
        actor_key: "SHA256:Yl0wCx2Pp4Kk3mQ8d4q3s8yS6b5bCk0ZpQp0N1dGm9A".into(),
        readers: vec!["usr_benchbenchbenchbenchbenchbe".into()],
        key_id: Some("ak_benchbenchbenchbenchbenchb".into()),
        authorization_id: Some("az_benchbenchbenchbenchbenchb".into()),
        namespace: Some("git".into()),
        payload_sha512: Some(format!("{n:0128x}")),
        metadata_sha256: Some(format!("{n:064x}")),
        rules: vec!["az_benchbenchbenchbenchbenchb:scope=pass".into()],
        ..Default::default()
    }
}

/// Where the logs go: files (with a sled store beside), or databases in one PostgreSQL cluster.
enum Engine {
    Files,
    Postgres(sshsign::pgcluster::Cluster),
}

impl Engine {
    /// The log named `name`, under `dir` (files, or the appliance's own witnessed checkpoints).
    fn open(
        &self,
        name: &str,
        dir: &Path,
        token: &Token,
        key: &sshsign::provision::ApplianceKey,
    ) -> (Option<sled::Db>, Arc<AuditLog>) {
        let signer = CheckpointSigner::new(token.clone(), std::slice::from_ref(key)).unwrap();
        match self {
            Engine::Files => {
                let db = sled::Config::new().path(dir.join("db")).open().unwrap();
                let log = AuditLog::open(&dir.join("tlog"), Some(&db), signer, 16 << 20).unwrap();
                (Some(db), Arc::new(log))
            }
            Engine::Postgres(cluster) => {
                let url = cluster.socket_url(name);
                let db =
                    sshsign::store::postgres::Postgres::open(&sshsign::store::postgres::Settings {
                        url: url.into(),
                        password: None,
                        ca_file: None,
                        pool: 4,
                    })
                    .unwrap();
                let log = AuditLog::open_shared(db, &dir.join("tlog"), signer, 16 << 20).unwrap();
                (None, Arc::new(log))
            }
        }
    }

    /// A new, empty place for a log named `name`.
    fn create(&self, name: &str) {
        if let Engine::Postgres(cluster) = self {
            cluster.create_database(name).unwrap();
        }
    }
}

/// Appends `count` entries from `writers` concurrent tasks; returns entries per second.
async fn append_rate(log: &Arc<AuditLog>, writers: u64, count: u64) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let log = Arc::clone(log);
            tokio::spawn(async move {
                for n in (w..count).step_by(writers as usize) {
                    log.append(&entry(n)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    count as f64 / start.elapsed().as_secs_f64()
}

fn per_op(total: Duration, ops: u64) -> String {
    format!("{:.1} µs", total.as_secs_f64() * 1e6 / ops as f64)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let entries: u64 = std::env::var("SSHSIGN_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store =
        SoftHsmStore::create(&dir.path().join("hsm"), "sshsign-bench", Path::new(SERVER)).unwrap();
    // SAFETY: single-threaded here, before the PKCS#11 module is loaded in this process.
    unsafe { std::env::set_var("SOFTHSM2_CONF", store.conf()) };
    let hsm = Pkcs11Hsm::open(Pkcs11Config::new(
        store.module.clone(),
        store.label.clone(),
        sshsign::secret::read_secret_file(&store.pin_file()).unwrap(),
        1,
    ))
    .unwrap();
    sshsign::provision::generate_appliance_keys(&hsm).unwrap();
    let keys = sshsign::provision::appliance_keys(&hsm).unwrap();
    let checkpoint_key = keys
        .into_iter()
        .find(|k| k.role == sshsign::provision::KeyRole::Checkpoint)
        .unwrap();
    let token = Token::new(Arc::new(hsm)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let engine = match std::env::var("SSHSIGN_BENCH_DATABASE").as_deref() {
        Ok("postgres") => Engine::Postgres(sshsign::pgcluster::Cluster::start().unwrap()),
        Ok("sled") | Err(_) => Engine::Files,
        Ok(other) => panic!("SSHSIGN_BENCH_DATABASE={other}: sled or postgres"),
    };

    println!(
        "sshsign audit log {}: {entries} entries, {} bytes each",
        match engine {
            Engine::Files => "in files",
            Engine::Postgres(_) => "in PostgreSQL",
        },
        entry(0).to_bytes().expect("an entry encodes").len()
    );
    println!();
    println!("append, durable (each append returns after its fsync or commit):");
    engine.create("rates");
    runtime.block_on(async {
        let rates = tempfile::tempdir().unwrap();
        let (_db, log) = engine.open("rates", rates.path(), &token, &checkpoint_key);
        for writers in [1, 8, 64, 256] {
            let count = (writers * 500).min(50_000);
            let cpu = proc_stat::cpu_seconds("self");
            let rate = append_rate(&log, writers, count).await;
            let per_entry = (proc_stat::cpu_seconds("self") - cpu) / count as f64 * 1e6;
            println!("  {writers:>4} concurrent appenders: {rate:>9.0} entries/s, {per_entry:>5.0} µs CPU each");
        }
        if matches!(engine, Engine::Postgres(_)) {
            // A second appliance on the same log: two writers, each batching its own appends,
            // integrated one batch after another under the head's row lock.
            let second = tempfile::tempdir().unwrap();
            let (_, other) = engine.open("rates", second.path(), &token, &checkpoint_key);
            for writers in [1, 8, 64, 256] {
                let count = (writers * 500).min(50_000);
                let (a, b) = tokio::join!(
                    append_rate(&log, writers, count),
                    append_rate(&other, writers, count)
                );
                println!(
                    "  two appliances, {writers:>4} appenders each: {:>9.0} entries/s in all",
                    a + b
                );
            }
        }
    });

    let big = tempfile::tempdir().unwrap();
    engine.create("big");
    let (db, log) = engine.open("big", big.path(), &token, &checkpoint_key);
    let start = Instant::now();
    let fill = runtime.block_on(append_rate(&log, 512, entries));
    println!(
        "  filling to {entries} with 512 appenders: {fill:.0} entries/s ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
    let (checkpoint, _) = runtime.block_on(log.checkpoint()).unwrap();

    // What every start-up does: read the head and the right edge, check them against the
    // signed checkpoint.
    drop(log);
    drop(db);
    let start = Instant::now();
    let (db, log) = engine.open("big", big.path(), &token, &checkpoint_key);
    println!();
    println!(
        "start-up (head, right edge, signed checkpoint) at {entries} entries: {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    // The full check: every entry read back and hashed against every tile.
    let start = Instant::now();
    log.verify_full(|_| {}).unwrap();
    println!(
        "full check of all {entries} entries against the tiles and the checkpoint: {:.2} s",
        start.elapsed().as_secs_f64()
    );
    drop(db);

    const PROOFS: u64 = 1000;
    let size = checkpoint.size;
    let root = checkpoint.root;
    let indexes: Vec<u64> = (0..PROOFS).map(|i| (i * 7_919_993) % size).collect();
    let mut proofs = Vec::new();
    let start = Instant::now();
    for &index in &indexes {
        proofs.push(runtime.block_on(log.inclusion(index, Some(size))).unwrap());
    }
    let generate = start.elapsed();
    let start = Instant::now();
    for proof in &proofs {
        let hashes: Vec<Vec<u8>> = proof
            .proof
            .iter()
            .map(|p| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, p).unwrap())
            .collect();
        let leaf = merkle::leaf_hash(proof.entry.as_bytes());
        merkle::verify_inclusion(proof.index, size, &leaf, &hashes, &root).unwrap();
    }
    let verify = start.elapsed();
    println!();
    println!(
        "inclusion proofs at {size} entries ({} hashes): generate {}, verify {}",
        proofs[0].proof.len(),
        per_op(generate, PROOFS),
        per_op(verify, PROOFS)
    );

    let olds: Vec<u64> = (1..=PROOFS)
        .map(|i| (i * 999_983) % (size - 1) + 1)
        .collect();
    let mut consistency = Vec::new();
    let start = Instant::now();
    for &old in &olds {
        consistency.push(runtime.block_on(log.consistency(old, Some(size))).unwrap());
    }
    let generate = start.elapsed();
    // The old roots a client would hold, computed here from the tree (not timed).
    let old_roots: Vec<_> = olds
        .iter()
        .map(|&old| merkle::subtree_hash(log.store(), 0, old).unwrap())
        .collect();
    let start = Instant::now();
    for (proof, old_root) in consistency.iter().zip(&old_roots) {
        let hashes: Vec<Vec<u8>> = proof
            .proof
            .iter()
            .map(|p| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, p).unwrap())
            .collect();
        merkle::verify_consistency(proof.from, size, &hashes, old_root, &root).unwrap();
    }
    let verify = start.elapsed();
    println!(
        "consistency proofs to {size} entries: generate {}, verify {}",
        per_op(generate, PROOFS),
        per_op(verify, PROOFS)
    );
}
