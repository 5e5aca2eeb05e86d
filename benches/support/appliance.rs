//! What the benchmarks share: a SoftHSMv2 token with the appliance keys, the raw token rate
//! through `cryptoki`, and a running `sshsign-server` reached over SSH.
//!
//! Each benchmark uses a subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sshsign::client::ClientConfig;
use sshsign::hsm::Hsm as _;
use sshsign::hsm::pkcs11::{Pkcs11Config, Pkcs11Hsm};
use sshsign::softhsm::SoftHsmStore;

use super::proc_stat;

pub const SERVER: &str = env!("CARGO_BIN_EXE_sshsign-server");
/// About the size of a git commit object.
pub const PAYLOAD: &[u8] = &[b'c'; 300];

/// The length of each measurement: `SSHSIGN_BENCH_SECONDS`, 2 s by default.
pub fn seconds() -> Duration {
    let secs = std::env::var("SSHSIGN_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `cargo bench -- --list` and `cargo test --benches` probe a benchmark with `--list`.
pub fn listing_only() -> bool {
    std::env::args().any(|a| a == "--list")
}

/// Runs `command`, insists that it succeeds and returns its stdout.
pub fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A fresh SoftHSMv2 token with the appliance keys, and an SSH identity for the client.
pub struct Bench {
    pub dir: tempfile::TempDir,
    pub store: SoftHsmStore,
    pub identity: PathBuf,
    /// With `SSHSIGN_BENCH_DATABASE=postgres`: the cluster the appliance's store is in, and the
    /// database's URL.
    pub database: Option<(sshsign::pgcluster::Cluster, String)>,
}

impl Bench {
    pub fn new(label: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SoftHsmStore::create(&dir.path().join("hsm"), label, Path::new(SERVER)).unwrap();
        // SAFETY: single-threaded here, before the PKCS#11 module is loaded in this process.
        unsafe { std::env::set_var("SOFTHSM2_CONF", store.conf()) };
        run(Command::new(SERVER)
            .args(["provision", "generate-appliance-keys"])
            .envs(store.env()));
        let identity = dir.path().join("id_ed25519");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&identity));
        let database = match std::env::var("SSHSIGN_BENCH_DATABASE").as_deref() {
            Ok("postgres") => {
                let cluster = sshsign::pgcluster::Cluster::start().unwrap();
                let url = cluster.create_database("sshsign").unwrap();
                eprintln!("the store is in PostgreSQL");
                Some((cluster, url))
            }
            Ok("sled") | Err(_) => None,
            Ok(other) => panic!("SSHSIGN_BENCH_DATABASE={other}: sled or postgres"),
        };
        Bench {
            dir,
            store,
            identity,
            database,
        }
    }

    pub fn cores() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Starts the appliance with `sessions` token sessions and `env` on top of the defaults.
    pub fn start_server(&self, sessions: usize, env: &[(&str, &str)]) -> Server {
        self.start_server_binary(None, sessions, env)
    }

    /// [`Self::start_server`] with another `sshsign-server` binary, if `binary` names one.
    pub fn start_server_binary(
        &self,
        binary: Option<&str>,
        sessions: usize,
        env: &[(&str, &str)],
    ) -> Server {
        let dir = self.dir.path();
        let mut child = Command::new(binary.unwrap_or(SERVER))
            .arg("serve")
            .envs(self.store.env())
            .env("SSHSIGN_HSM_SESSIONS", sessions.to_string())
            .env("SSHSIGN_LISTEN_ADDR", "127.0.0.1:0")
            .env("SSHSIGN_HTTP_ADDR", "127.0.0.1:0")
            .env("SSHSIGN_DB_PATH", dir.join("db"))
            .env("SSHSIGN_HOST_KEY_PATH", dir.join("host_key"))
            .env("SSHSIGN_LOG", "warn")
            // A benchmark measures the token and the appliance, not the quotas (whose check is
            // still on the path, only with limits it never reaches).
            .env(
                "SSHSIGN_QUOTAS",
                "signatures=1000000/min, approval_requests=1000000/min",
            )
            .envs(
                self.database
                    .iter()
                    .map(|(_, url)| ("SSHSIGN_DATABASE_URL", url)),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The first JSON line (a wrapper such as heaptrack may print lines of its own first).
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let listening: serde_json::Value = loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "the server ended");
            if let Ok(value) = serde_json::from_str(&line) {
                break value;
            }
        };
        // Keep reading, so that a wrapper's later output never blocks the server.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let address =
            |name: &str| -> SocketAddr { listening[name].as_str().unwrap().parse().unwrap() };
        Server {
            child,
            http: address("http"),
            config: ClientConfig {
                host: "127.0.0.1".to_owned(),
                port: address("ssh").port(),
                user: "bench".to_owned(),
                identity: Some(self.identity.clone()),
                default_identities: Vec::new(),
                known_hosts: dir.join("unused_known_hosts"),
                host_key_fingerprint: Some(
                    listening["host_key_fingerprint"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                ),
            },
        }
    }
}

/// A running appliance; killed on drop.
pub struct Server {
    child: Child,
    pub config: ClientConfig,
    pub http: SocketAddr,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it as systemd would (SIGTERM), and waits for it to finish.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    pub fn cpu_seconds(&self) -> f64 {
        proc_stat::cpu_seconds(&self.child.id().to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The token as the raw measurement sees it: `sessions` sessions and a key of its own.
pub struct RawToken {
    hsm: Arc<Pkcs11Hsm>,
    key: sshsign::hsm::TokenKey,
    sessions: usize,
}

impl RawToken {
    pub fn open(store: &SoftHsmStore, sessions: usize) -> Self {
        let hsm = Arc::new(
            Pkcs11Hsm::open(Pkcs11Config::new(
                store.module.clone(),
                store.label.clone(),
                sshsign::secret::read_secret_file(&store.pin_file()).unwrap(),
                sessions,
            ))
            .unwrap(),
        );
        let key = hsm.generate_ed25519("bench-raw").unwrap();
        RawToken { hsm, key, sessions }
    }

    /// Signatures a second: one thread per session, signing through `cryptoki` for `duration`.
    pub fn rate(&self, duration: Duration) -> f64 {
        let count = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let threads: Vec<_> = (0..self.sessions)
            .map(|_| {
                let (hsm, key, count) =
                    (Arc::clone(&self.hsm), self.key.clone(), Arc::clone(&count));
                std::thread::spawn(move || {
                    while start.elapsed() < duration {
                        hsm.sign(&key.object_id, PAYLOAD).unwrap();
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
    }
}

impl Drop for RawToken {
    fn drop(&mut self) {
        let _ = self.hsm.destroy(&self.key.object_id);
    }
}
