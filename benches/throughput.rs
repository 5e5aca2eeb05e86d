//! Signing throughput: the raw token rate against the appliance's end-to-end rate over SSH.
//!
//! `cargo bench --bench throughput` (release build; run it on an otherwise idle machine). For
//! each concurrency N it prints:
//!
//! - raw: N threads signing through `cryptoki` with N token sessions (the ceiling);
//! - (a) a new SSH connection per signature, N clients at once (what the git shim does);
//! - (b) one persistent SSH connection with 8·N exec channels in flight;
//! - (c) one `session` channel with 8·N requests pipelined;
//! - (d) one `session` channel with N requests in flight (one per client, as an agent waits);
//!
//! and the ratio of each to the raw rate (the appliance runs with N token sessions too); then the
//! CPU time per signature of the raw loop and of the appliance in (c), whose difference is what
//! the appliance itself spends per request (SSH, parsing, policy, replies). Then the wall time of `git commit -S` through the
//! shim against `ssh-keygen -Y sign` with a file key. Client, server and token share the
//! machine: where the token alone keeps every core busy, the SSH work has to take its CPU from
//! the token.
//! SoftHSM's speed drifts on a shared machine, so raw, (b), (c) and (d) are measured in alternation,
//! `ROUNDS` times each, and the medians are printed. `SSHSIGN_BENCH_SECONDS` sets the length of
//! each measurement (default 2). `SSHSIGN_BENCH_DATABASE=postgres` puts the appliance's store in
//! a PostgreSQL cluster of the benchmark's own (the same for every benchmark that starts one).

#[path = "support/appliance.rs"]
mod appliance;
#[path = "support/proc_stat.rs"]
mod proc_stat;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use appliance::{Bench, PAYLOAD, RawToken, median, run, seconds};
use sshsign::client::{ClientConfig, Connection, Session};

const SHIM: &str = env!("CARGO_BIN_EXE_sshsign");
const CONCURRENCY: [usize; 3] = [1, 2, 4];
const COMMITS: usize = 20;
const ROUNDS: usize = 3;

fn sign_words(key_id: &str) -> Vec<String> {
    ["sign", "--type", "git", "--key-id", key_id]
        .map(String::from)
        .to_vec()
}

async fn sign_once(connection: &Connection, words: &[String]) {
    let output = connection.run(words, PAYLOAD).await.unwrap();
    assert_eq!(
        output.exit_status,
        0,
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// (a): `clients` tasks, each connecting anew for every signature.
async fn connection_per_signature(
    config: &ClientConfig,
    key_id: &str,
    clients: usize,
    duration: Duration,
) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (config, words, count) = (config.clone(), sign_words(key_id), Arc::clone(&count));
            tokio::spawn(async move {
                while start.elapsed() < duration {
                    let connection = Connection::connect(&config).await.unwrap();
                    sign_once(&connection, &words).await;
                    connection.close().await;
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// How requests reach the appliance in (b), (c) and (d).
#[derive(Clone)]
enum Via {
    /// An exec channel per request on one connection.
    Exec(Arc<Connection>),
    /// Requests on one `session` channel.
    Session(Arc<Session>),
}

impl Via {
    async fn sign(&self, words: &[String]) {
        let output = match self {
            Via::Exec(connection) => connection.run(words, PAYLOAD).await,
            Via::Session(session) => session.run(words, PAYLOAD).await,
        };
        let output = output.unwrap();
        assert_eq!(
            output.exit_status,
            0,
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

/// With the store in PostgreSQL: one appliance against two on the same database (and the same
/// token's keys), at the same total of token sessions and of requests in flight, pipelined on
/// one `session` channel per appliance as in (c). The two share the machine's cores with each
/// other, the token and PostgreSQL, so this measures what a second appliance costs, not what a
/// second machine would add.
fn one_against_two(
    bench: &Bench,
    runtime: &tokio::runtime::Runtime,
    key_id: &str,
    duration: Duration,
) {
    println!();
    println!("one appliance against two on one PostgreSQL database, (c) with 8N in flight in all:");
    println!("{:>3}  {:>12}  {:>20}", "N", "one /s", "two /s (ratio)");
    let second = bench.dir.path().join("second");
    std::fs::create_dir_all(&second).unwrap();
    let second_env = [
        ("SSHSIGN_DB_PATH", second.join("db")),
        ("SSHSIGN_HOST_KEY_PATH", second.join("host_key")),
        ("SSHSIGN_AUDIT_PATH", second.join("tlog")),
    ];
    let second_env: Vec<(&str, &str)> = second_env
        .iter()
        .map(|(name, path)| (*name, path.to_str().unwrap()))
        .collect();
    for n in [2, 4] {
        let (mut one, mut two) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let server = bench.start_server(n, &[]);
            one.push(runtime.block_on(async {
                let connection = Connection::connect(&server.config).await.unwrap();
                let session = Via::Session(Arc::new(Session::open(&connection).await.unwrap()));
                persistent_connection(&session, key_id, 8 * n, duration).await
            }));
            drop(server);
            let servers = [
                bench.start_server(n / 2, &[]),
                bench.start_server(n / 2, &second_env),
            ];
            two.push(runtime.block_on(async {
                let (mut connections, mut sessions) = (Vec::new(), Vec::new());
                for server in &servers {
                    let connection = Connection::connect(&server.config).await.unwrap();
                    sessions.push(Via::Session(Arc::new(
                        Session::open(&connection).await.unwrap(),
                    )));
                    connections.push(connection);
                }
                let (a, b) = tokio::join!(
                    persistent_connection(&sessions[0], key_id, 4 * n, duration),
                    persistent_connection(&sessions[1], key_id, 4 * n, duration)
                );
                a + b
            }));
        }
        let (one, two) = (median(one), median(two));
        println!("{n:>3}  {one:>12.0}  {two:>12.0} ({:>5.2})", two / one);
    }
}

/// (b), (c), (d): `in_flight` requests at a time through `via`.
async fn persistent_connection(
    via: &Via,
    key_id: &str,
    in_flight: usize,
    duration: Duration,
) -> f64 {
    let words = sign_words(key_id);
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (via, words) = (via.clone(), words.clone());
            let (count, stop) = (Arc::clone(&count), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    via.sign(&words).await;
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    for task in tasks {
        task.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

/// With `SSHSIGN_BENCH_PERF=FILE`: the appliance's call stacks (perf record, 999 Hz) while
/// `load` runs, into FILE, for `perf report -i FILE`.
async fn profile<F: Future<Output = f64>>(
    file: &std::ffi::OsStr,
    pid: u32,
    duration: Duration,
    load: impl FnOnce() -> F,
) {
    let mut perf = Command::new("perf")
        .args([
            "record",
            "-F",
            "999",
            "-g",
            "--call-graph",
            "dwarf,16384",
            "-o",
        ])
        .arg(file)
        .args(["-p", &pid.to_string(), "--", "sleep"])
        .arg(duration.as_secs_f64().to_string())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("perf (Debian's linux-perf)");
    let rate = load().await;
    let status = perf.wait().unwrap();
    assert!(status.success(), "perf record failed");
    println!(
        "  (profiled {:.0} signatures/s on the session into {})",
        rate,
        Path::new(file).display()
    );
}

/// Mean wall time of `git commit -S` in a fresh repository with `config` applied.
fn commit_time(
    dir: &Path,
    name: &str,
    config: &[(&str, &str)],
    env: &[(String, String)],
) -> Duration {
    let repo = dir.join(name);
    let git = |args: &[&str]| {
        let mut command = Command::new("git");
        command
            .current_dir(&repo)
            .args(args)
            .env("HOME", dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .envs(env.iter().map(|(k, v)| (k, v)));
        command
    };
    std::fs::create_dir_all(&repo).unwrap();
    run(&mut git(&["init", "-q"]));
    for (key, value) in [
        ("user.name", "Bench"),
        ("user.email", "bench@example.com"),
        ("gpg.format", "ssh"),
    ]
    .iter()
    .chain(config)
    {
        run(&mut git(&["config", key, value]));
    }
    let start = Instant::now();
    for i in 0..COMMITS {
        run(&mut git(&[
            "commit",
            "-q",
            "-S",
            "--allow-empty",
            "-m",
            &format!("commit {i}"),
        ]));
    }
    start.elapsed() / COMMITS as u32
}

fn main() {
    if appliance::listing_only() {
        return;
    }
    let duration = seconds();
    let bench = Bench::new("sshsign-bench");
    let (dir, store, identity) = (&bench.dir, &bench.store, &bench.identity);

    let cores = Bench::cores();
    println!(
        "sshsign throughput: {cores} cores, {:.1} s per measurement, {}-byte payload",
        duration.as_secs_f64(),
        PAYLOAD.len()
    );
    println!();
    println!(
        "{:>3}  {:>8}  {:>18}  {:>18}  {:>18}  {:>18}  {:>22}",
        "N",
        "raw /s",
        "(a) conn/sig",
        "(b) exec, 8N",
        "(c) session, 8N",
        "(d) session, N",
        "CPU µs/sig: raw, (c)"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut key_id = String::new();
    for n in CONCURRENCY {
        let raw_token = RawToken::open(store, n);
        let server = bench.start_server(n, &[]);
        let (raw, a, b, c, d, raw_cpu, cpu) = runtime.block_on(async {
            let connection = Arc::new(Connection::connect(&server.config).await.unwrap());
            if key_id.is_empty() {
                let created = connection
                    .run(&["create-key".to_owned()], &[])
                    .await
                    .unwrap();
                key_id = created.json().unwrap()["key_id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
            }
            sign_once(&connection, &sign_words(&key_id)).await;
            let a = connection_per_signature(&server.config, &key_id, n, duration).await;
            let session = Via::Session(Arc::new(Session::open(&connection).await.unwrap()));
            let exec = Via::Exec(Arc::clone(&connection));
            let (mut raw, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut raw_cpu, mut cpu) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let before = proc_stat::cpu_seconds("self");
                let rate = raw_token.rate(duration);
                raw_cpu.push(
                    (proc_stat::cpu_seconds("self") - before) / (rate * duration.as_secs_f64()),
                );
                raw.push(rate);
                b.push(persistent_connection(&exec, &key_id, 8 * n, duration).await);
                let before = server.cpu_seconds();
                let rate = persistent_connection(&session, &key_id, 8 * n, duration).await;
                cpu.push((server.cpu_seconds() - before) / (rate * duration.as_secs_f64()));
                c.push(rate);
                d.push(persistent_connection(&session, &key_id, n, duration).await);
            }
            if let Some(file) = std::env::var_os("SSHSIGN_BENCH_PERF").filter(|_| n == 2) {
                profile(&file, server.pid(), duration, || {
                    persistent_connection(&session, &key_id, 8 * n, duration)
                })
                .await;
            }
            let (raw, b, c, d) = (median(raw), median(b), median(c), median(d));
            (raw, a, b, c, d, median(raw_cpu), median(cpu))
        });
        println!(
            "{n:>3}  {raw:>8.0}  {a:>10.0} ({:>5.2})  {b:>10.0} ({:>5.2})  {c:>10.0} ({:>5.2})  {d:>10.0} ({:>5.2})  {:>11.0}, {:>8.0}",
            a / raw,
            b / raw,
            c / raw,
            d / raw,
            raw_cpu * 1e6,
            cpu * 1e6
        );
        drop(server);
    }

    if bench.database.is_some() {
        one_against_two(&bench, &runtime, &key_id, duration);
    }

    // git commit -S through the shim against ssh-keygen with a file key.
    let server = bench.start_server(2, &[]);
    let shim_dir: PathBuf = Path::new(SHIM).parent().unwrap().to_owned();
    let env = vec![
        (
            "PATH".to_owned(),
            format!("{}:{}", shim_dir.display(), std::env::var("PATH").unwrap()),
        ),
        ("SSHSIGN_HOST".to_owned(), server.config.host.clone()),
        ("SSHSIGN_PORT".to_owned(), server.config.port.to_string()),
        (
            "SSHSIGN_IDENTITY".to_owned(),
            identity.display().to_string(),
        ),
        (
            "SSHSIGN_HOST_KEY_FINGERPRINT".to_owned(),
            server.config.host_key_fingerprint.clone().unwrap(),
        ),
    ];
    let through_shim = commit_time(
        dir.path(),
        "shim",
        &[("gpg.ssh.program", "sshsign"), ("user.signingkey", &key_id)],
        &env,
    );
    let local = commit_time(
        dir.path(),
        "local",
        &[
            ("gpg.ssh.program", "ssh-keygen"),
            ("user.signingkey", identity.to_str().unwrap()),
        ],
        &env,
    );
    println!();
    println!(
        "git commit -S ({COMMITS} commits): through the shim {:.1} ms, ssh-keygen with a file key {:.1} ms, ratio {:.2}",
        through_shim.as_secs_f64() * 1e3,
        local.as_secs_f64() * 1e3,
        through_shim.as_secs_f64() / local.as_secs_f64()
    );
}
