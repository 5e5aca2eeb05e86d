//! Soak: sign at the token's rate for a long time and watch the server's memory, open files and
//! disk. Every signature's audit entry is durable before the token signs, as always.
//!
//! `cargo bench --bench soak` (release build). Settings:
//!
//! - `SSHSIGN_SOAK_SECONDS`: how long (default 600; the README's figures use 3600);
//! - `SSHSIGN_SOAK_INTERVAL`: seconds between reports (default 60);
//! - `SSHSIGN_SOAK_CLIENTS`: clients, each on one persistent SSH connection with 4 signatures
//!   in flight (default 2);
//! - `SSHSIGN_SOAK_SERVER`: another `sshsign-server` binary to soak (an older build, to compare);
//! - `SSHSIGN_BENCH_DATABASE=postgres`: the store and the audit log in a PostgreSQL cluster of
//!   the bench's own, as several appliances run (its data directory, WAL included, counts as
//!   disk).
//!
//! Each report prints the signatures so far and their rate, the server's RSS, open files and
//! threads, the bytes on disk (database and audit log) per signature, and the RSS of this process,
//! the clients (which reconnect every `client::COMMANDS_PER_CONNECTION` commands). The last line says
//! how much RSS grew per signature after the first report, and whether it stayed within 64 MiB of
//! its level then.
//!
//! On SoftHSMv2 2.6.1 (Debian 12) RSS grows by about 60 bytes a signature that are not the
//! appliance's: the module leaks the `CKA_EC_PARAMS` it decodes at every `C_SignInit` (README,
//! "Memory"). A heap profile (heaptrack, `--features system-alloc`) tells the two apart.

#[path = "support/appliance.rs"]
mod appliance;
#[path = "support/proc_stat.rs"]
mod proc_stat;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use appliance::{Bench, PAYLOAD};
use sshsign::client::Connection;

/// How far RSS may move after the first report.
const RSS_SLACK: u64 = 64 << 20;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `/proc/<pid>/status` field in bytes (`VmRSS`) or as a count (`Threads`).
fn status_field(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |n| if name == "VmRSS" { n * 1024 } else { n })
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Bytes of every file under `path`.
fn disk_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path).map_or(0, |listing| {
        listing.flatten().map(|item| disk_bytes(&item.path())).sum()
    })
}

fn main() {
    if appliance::listing_only() {
        return;
    }
    let seconds = setting("SSHSIGN_SOAK_SECONDS", 600);
    let interval = setting("SSHSIGN_SOAK_INTERVAL", 60).max(1);
    let clients = setting("SSHSIGN_SOAK_CLIENTS", 2).max(1);
    let bench = Bench::new("sshsign-soak");
    let server_binary = std::env::var("SSHSIGN_SOAK_SERVER").ok();
    let mut server = bench.start_server_binary(server_binary.as_deref(), 2, &[]);
    let pid = server.pid();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key_id = runtime.block_on(async {
        let connection = Connection::connect(&server.config).await.unwrap();
        let created = connection
            .run(&["create-key".to_owned()], b"")
            .await
            .unwrap();
        let reply: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
        reply["key_id"].as_str().unwrap().to_owned()
    });

    let signed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (config, key_id) = (server.config.clone(), key_id.clone());
            let (signed, failed, stop) =
                (Arc::clone(&signed), Arc::clone(&failed), Arc::clone(&stop));
            runtime.spawn(async move {
                let connection = Arc::new(Connection::connect(&config).await.unwrap());
                let words: Vec<String> = ["sign", "--type", "git", "--key-id", &key_id]
                    .map(String::from)
                    .to_vec();
                let lanes: Vec<_> = (0..4)
                    .map(|_| {
                        let (connection, words) = (Arc::clone(&connection), words.clone());
                        let (signed, failed, stop) =
                            (Arc::clone(&signed), Arc::clone(&failed), Arc::clone(&stop));
                        tokio::spawn(async move {
                            while !stop.load(Ordering::Relaxed) {
                                match connection.run(&words, PAYLOAD).await {
                                    Ok(out) if out.exit_status == 0 => {
                                        signed.fetch_add(1, Ordering::Relaxed)
                                    }
                                    _ => failed.fetch_add(1, Ordering::Relaxed),
                                };
                            }
                        })
                    })
                    .collect();
                for lane in lanes {
                    lane.await.unwrap();
                }
            })
        })
        .collect();

    let dir = bench.dir.path();
    println!(
        "sshsign soak: {seconds} s, {clients} clients × 4 in flight, report every {interval} s{}",
        server_binary
            .as_deref()
            .map(|s| format!(", server {s}"))
            .unwrap_or_default()
    );
    println!(
        "{:>6} {:>11} {:>8} {:>9} {:>6} {:>7} {:>10} {:>9} {:>10}",
        "s",
        "signatures",
        "per s",
        "RSS MiB",
        "files",
        "threads",
        "disk MiB",
        "B/sig",
        "client MiB"
    );
    let start = Instant::now();
    let mut last = (0u64, Instant::now());
    let mut first_rss = None;
    let mut worst = 0u64;
    let mut growth = (0u64, 0u64, 0u64);
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(interval).min(
            Duration::from_secs(seconds).saturating_sub(start.elapsed()) + Duration::from_millis(1),
        ));
        let count = signed.load(Ordering::Relaxed);
        let rate = (count - last.0) as f64 / last.1.elapsed().as_secs_f64();
        last = (count, Instant::now());
        let rss = status_field(pid, "VmRSS");
        let disk = disk_bytes(&dir.join("db"))
            + disk_bytes(&dir.join("db.tlog"))
            + bench
                .database
                .as_ref()
                .map_or(0, |(cluster, _)| disk_bytes(&cluster.data_dir()));
        match first_rss {
            None => {
                first_rss = Some(rss);
                growth = (count, rss, count);
            }
            Some(first) => {
                worst = worst.max(rss.abs_diff(first));
                growth = (growth.0, rss, count);
            }
        }
        println!(
            "{:>6} {:>11} {:>8.0} {:>9.1} {:>6} {:>7} {:>10.1} {:>9.0} {:>10.1}",
            start.elapsed().as_secs(),
            count,
            rate,
            rss as f64 / f64::from(1 << 20),
            open_files(pid),
            status_field(pid, "Threads"),
            disk as f64 / f64::from(1 << 20),
            disk as f64 / count.max(1) as f64,
            status_field(std::process::id(), "VmRSS") as f64 / f64::from(1 << 20),
        );
    }
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for task in tasks {
            let _ = task.await;
        }
    });
    server.terminate();
    let (from, rss_now, to) = growth;
    let grew_per_signature = rss_now.saturating_sub(first_rss.unwrap_or(rss_now)) as f64
        / (to.saturating_sub(from)).max(1) as f64;
    println!(
        "failed requests: {}; RSS grew {grew_per_signature:.1} B a signature after the first \
         report, and moved at most {:.1} MiB: {}",
        failed.load(Ordering::Relaxed),
        worst as f64 / f64::from(1 << 20),
        if worst <= RSS_SLACK {
            "flat (within 64 MiB)"
        } else {
            "GROWING (past 64 MiB)"
        }
    );
}
