//! The harness: a real appliance per test (its own SoftHSMv2 token made by
//! `softhsm-fixtures/init-token.sh`, the `sshsign-server` binary listening on 127.0.0.1:0), users
//! with their own SSH keys, and the stock `ssh` client to talk to it.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use sshsign::hsm::DeviceLimits;
use sshsign::hsm::pkcs11::{Pkcs11Config, Pkcs11Hsm, module};
use sshsign::hsm::profile::EcParamsForm;
use sshsign::softhsm::{SoftHsmStore, SoftToken};
use tempfile::TempDir;

pub const SERVER: &str = env!("CARGO_BIN_EXE_sshsign-server");
pub const SHIM: &str = env!("CARGO_BIN_EXE_sshsign");

/// A command with the developer's own SSHSIGN_* settings removed, so tests see only their own.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SSHSIGN_") {
            command.env_remove(name);
        }
    }
    command
}

/// A fresh token store with one token: the software token of [`test_token`].
pub fn test_token_store(dir: &Path) -> SoftHsmStore {
    match test_token() {
        SoftToken::SoftHsm => token_store(dir),
        SoftToken::Kryoptic => kryoptic_store(dir),
    }
}

/// A fresh SoftHSMv2 token store with one token, made by the fixture script.
pub fn token_store(dir: &Path) -> SoftHsmStore {
    SoftHsmStore::create(&dir.join("hsm"), "sshsign-test", Path::new(SERVER))
        .expect("making a SoftHSMv2 token with softhsm-fixtures/init-token.sh")
}

/// Runs `sshsign-server provision ARGS` against `store`'s token.
pub fn provision(store: &SoftHsmStore, args: &[&str]) -> Output {
    provision_with(store, &[], args)
}

/// [`provision`] with `env` on top of the store's settings.
pub fn provision_with(store: &SoftHsmStore, env: &[(&str, &str)], args: &[&str]) -> Output {
    clean_command(SERVER)
        .arg("provision")
        .args(args)
        .envs(store.env())
        .envs(env.iter().copied())
        .output()
        .expect("running sshsign-server provision")
}

/// A running appliance; killed when dropped.
pub struct Appliance {
    pub dir: TempDir,
    pub store: SoftHsmStore,
    child: Child,
    pub ssh_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub host_key: String,
    pub host_key_fingerprint: String,
    /// A known_hosts file that pins this appliance's host key.
    pub known_hosts: PathBuf,
    env: Vec<(String, String)>,
    log: Arc<Mutex<String>>,
    /// The PostgreSQL cluster holding the store, under `SSHSIGN_TEST_DATABASE=postgres`.
    _database: Option<sshsign::pgcluster::Cluster>,
}

/// Where a started server listens, from the line it prints on stdout.
struct Listening {
    ssh_addr: SocketAddr,
    http_addr: SocketAddr,
    host_key: String,
    host_key_fingerprint: String,
}

/// `sshsign-server` on `store`'s token with its state in `dir`, listening on loopback ports of
/// its own choosing, with `env` over that.
fn server(dir: &Path, store: &SoftHsmStore, env: &[(String, String)]) -> Command {
    let mut command = clean_command(SERVER);
    command
        .envs(store.env())
        .env("SSHSIGN_LISTEN_ADDR", "127.0.0.1:0")
        .env("SSHSIGN_HTTP_ADDR", "127.0.0.1:0")
        .env("SSHSIGN_DB_PATH", dir.join("db"))
        .env("SSHSIGN_HOST_KEY_PATH", dir.join("host_key"))
        .envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// Runs `sshsign-server serve` on `store`'s token with its state in `dir`; waits until it listens.
fn spawn(
    dir: &Path,
    store: &SoftHsmStore,
    env: &[(String, String)],
) -> (Child, Arc<Mutex<String>>, Listening) {
    let mut child = server(dir, store, env)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sshsign-server serve");
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().expect("stderr");
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first_line)
        .expect("reading the listening line");
    if first_line.is_empty() {
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(200));
        panic!("the appliance did not start:\n{}", log.lock().unwrap());
    }
    let listening: Value = serde_json::from_str(&first_line).expect("listening line");
    let text = |field: &str| listening[field].as_str().unwrap().to_owned();
    let listening = Listening {
        ssh_addr: text("ssh").parse().unwrap(),
        http_addr: text("http").parse().unwrap(),
        host_key: text("host_key"),
        host_key_fingerprint: text("host_key_fingerprint"),
    };
    (child, log, listening)
}

impl Appliance {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra environment variables for `serve`.
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        Self::start_on(&[], env)
    }

    /// Starts on the token that `token`'s settings name (in place of the software token's own,
    /// which stays for anything they leave out), provisioned through them, with `env` for
    /// `serve`.
    pub fn start_on(token: &[(&str, &str)], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = test_token_store(dir.path());
        Self::start_in(dir, store, token, env)
    }

    /// [`Appliance::start_on`] with the state in `dir` and the token of `store`.
    pub fn start_in(
        dir: TempDir,
        store: SoftHsmStore,
        token: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Self {
        let keys = provision_with(&store, token, &["generate-appliance-keys"]);
        assert!(
            keys.status.success(),
            "{}",
            String::from_utf8_lossy(&keys.stderr)
        );
        let mut env: Vec<(String, String)> = token
            .iter()
            .chain(env)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // A test that names its own database keeps it.
        let database = match env.iter().any(|(name, _)| name == "SSHSIGN_DATABASE_URL") {
            true => None,
            false => test_database(),
        };
        if let Some((_, url)) = &database {
            env.push(("SSHSIGN_DATABASE_URL".into(), url.clone()));
        }
        let (child, log, listening) = spawn(dir.path(), &store, &env);
        let known_hosts = dir.path().join("known_hosts");
        let mut appliance = Appliance {
            ssh_addr: listening.ssh_addr,
            http_addr: listening.http_addr,
            host_key_fingerprint: listening.host_key_fingerprint,
            host_key: listening.host_key,
            known_hosts,
            dir,
            store,
            env,
            child,
            log,
            _database: database.map(|(cluster, _)| cluster),
        };
        appliance.pin_host_key();
        appliance
    }

    fn pin_host_key(&mut self) {
        std::fs::write(
            &self.known_hosts,
            format!("[127.0.0.1]:{} {}\n", self.ssh_addr.port(), self.host_key),
        )
        .unwrap();
    }

    /// Stops the server and starts it again on the same token, database and host key (the ports
    /// change; users made before must be re-pointed with [`User::at`]).
    pub fn restart(&mut self) {
        self.restart_with(&[]);
    }

    /// [`Appliance::restart`] with extra environment variables for this run only.
    pub fn restart_with(&mut self, extra: &[(&str, &str)]) {
        self.stop();
        let mut env = self.env.clone();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let (child, log, listening) = spawn(self.dir.path(), &self.store, &env);
        self.child = child;
        self.log = log;
        assert_eq!(
            listening.host_key, self.host_key,
            "the host key must persist"
        );
        self.ssh_addr = listening.ssh_addr;
        self.http_addr = listening.http_addr;
        self.pin_host_key();
    }

    /// The PostgreSQL cluster the store (and the audit log) is in, when the suite runs there.
    pub fn database(&self) -> Option<&sshsign::pgcluster::Cluster> {
        self._database.as_ref()
    }

    /// Runs `sshsign-server` with `args` in the appliance's environment (its token and database).
    pub fn server_command(&self, args: &[&str]) -> std::process::Output {
        server(self.dir.path(), &self.store, &self.env)
            .args(args)
            .output()
            .unwrap()
    }

    /// A tile directory holding the audit log up to its latest checkpoint (which verifies under
    /// `vkey`): the log's own directory copied, or, when the log is in PostgreSQL, what
    /// `sshsign-server audit export` writes. The appliance must be stopped.
    pub fn copy_of_log(&self, vkey: &str, to: &Path) {
        match &self._database {
            Some(_) => {
                let exported = self.server_command(&[
                    "audit",
                    "export",
                    "--to",
                    to.to_str().unwrap(),
                    "--key",
                    vkey,
                ]);
                assert!(
                    exported.status.success(),
                    "{}",
                    String::from_utf8_lossy(&exported.stderr)
                );
            }
            None => copy_dir(&self.dir.path().join("db.tlog"), to),
        }
    }

    /// Keeps a copy of the store as it stands under `name` (the appliance must be stopped).
    pub fn save_store(&self, name: &str) {
        match &self._database {
            Some(cluster) => {
                cluster
                    .psql(
                        "postgres",
                        &format!("CREATE DATABASE {name} TEMPLATE sshsign"),
                    )
                    .unwrap();
            }
            None => copy_dir(&self.dir.path().join("db"), &self.dir.path().join(name)),
        }
    }

    /// Puts back the store [`Appliance::save_store`] kept (the appliance must be stopped).
    pub fn restore_store(&self, name: &str) {
        match &self._database {
            Some(cluster) => {
                cluster.psql("postgres", "DROP DATABASE sshsign").unwrap();
                cluster
                    .psql(
                        "postgres",
                        &format!("CREATE DATABASE sshsign TEMPLATE {name}"),
                    )
                    .unwrap();
            }
            None => {
                let db = self.dir.path().join("db");
                std::fs::remove_dir_all(&db).unwrap();
                copy_dir(&self.dir.path().join(name), &db);
            }
        }
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A new user with a fresh ed25519 SSH key (registered on first connection).
    pub fn user(&self, name: &str) -> User {
        self.user_with_key_type(name, "ed25519")
    }

    pub fn user_with_key_type(&self, name: &str, key_type: &str) -> User {
        let key = self.dir.path().join(format!("{name}_id"));
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", key_type, "-N", "", "-C", name, "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success());
        User {
            key,
            port: self.ssh_addr.port(),
            known_hosts: self.known_hosts.clone(),
        }
    }

    /// `GET path` on the HTTP side: (status, JSON body).
    pub fn http_get(&self, path: &str) -> (u16, Value) {
        let reply = self.http("GET", path, &[], b"");
        (reply.status, reply.json)
    }

    /// One HTTP/1.1 request on its own connection, written out byte for byte so tests control
    /// every header; `Content-Length` is added when there is a body.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpReply {
        self.http_over(
            TcpStream::connect(self.http_addr).unwrap(),
            method,
            path,
            headers,
            body,
        )
    }

    /// [`Appliance::http`] from another loopback address, as another client.
    pub fn http_from(
        &self,
        from: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpReply {
        let stream = connect_from(from, self.http_addr);
        self.http_over(stream, method, path, headers, body)
    }

    fn http_over(
        &self,
        mut stream: TcpStream,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpReply {
        // A server that stops answering fails the test instead of hanging it.
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        // The server may answer (413) before it has read everything; that is not a failure.
        let _ = stream.write_all(body);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        HttpReply::parse(&response)
    }

    /// Saves the appliance's JWKS in `dir`, for offline checks.
    pub fn save_jwks(&self, dir: &Path) -> PathBuf {
        let (status, jwks) = self.http_get("/.well-known/jwks.json");
        assert_eq!(status, 200);
        write_file(dir, "jwks.json", jwks.to_string())
    }

    /// Which of `needles` appear, in the clear, in the store: the sled database's files, or
    /// every key and value of the PostgreSQL table ("needle in file" or "needle in tree").
    pub fn stored_text(&self, needles: &[&str]) -> Vec<String> {
        if let Some(cluster) = &self._database {
            let rows = cluster
                .psql(
                    "sshsign",
                    "SELECT tree, encode(key, 'hex'), encode(value, 'hex') FROM sshsign_records",
                )
                .unwrap();
            let mut found = Vec::new();
            for row in rows.lines() {
                let mut fields = row.split('|');
                let tree = fields.next().unwrap_or_default();
                let bytes: Vec<u8> = fields
                    .flat_map(|hex| sshsign::hex::decode(hex).unwrap_or_default())
                    .collect();
                for needle in needles {
                    if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        found.push(format!("{needle} in {tree}"));
                    }
                }
            }
            return found;
        }
        fn files(dir: &Path) -> Vec<PathBuf> {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    found.extend(files(&path));
                } else {
                    found.push(path);
                }
            }
            found
        }
        let mut found = Vec::new();
        for file in files(&self.dir.path().join("db")) {
            let bytes = std::fs::read(&file).unwrap();
            for needle in needles {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(format!("{needle} in {}", file.display()));
                }
            }
        }
        found
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Kills the server with SIGKILL, as a crash or power loss would stop it.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The in-process SSH client's settings for `user`, pinned to this appliance's host key.
    pub fn client_config(&self, user: &User) -> sshsign::client::ClientConfig {
        sshsign::client::ClientConfig {
            host: "127.0.0.1".to_owned(),
            port: self.ssh_addr.port(),
            user: "test".to_owned(),
            identity: Some(user.key.clone()),
            default_identities: Vec::new(),
            known_hosts: self.known_hosts.clone(),
            host_key_fingerprint: Some(self.host_key_fingerprint.clone()),
        }
    }

    /// Stops the server with SIGTERM and waits for it.
    /// Kills the server with SIGKILL: no shutdown, nothing flushed that was not durable.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A user: an SSH key and how to reach the appliance.
#[derive(Clone)]
pub struct User {
    pub key: PathBuf,
    pub port: u16,
    pub known_hosts: PathBuf,
}

/// What a command returned through `ssh`.
#[derive(Debug)]
pub struct Reply {
    pub status: i32,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    pub fn error_code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, 0, "{self:?}");
        &self.json
    }

    #[track_caller]
    pub fn failed_with(&self, code: &str) -> &str {
        assert_ne!(self.status, 0, "{self:?}");
        assert_eq!(self.error_code(), code, "{self:?}");
        self.json["error"]["message"].as_str().unwrap()
    }
}

impl User {
    /// The same user, pointed at `appliance` (after a restart moved its port).
    pub fn at(&self, appliance: &Appliance) -> User {
        User {
            key: self.key.clone(),
            port: appliance.ssh_addr.port(),
            known_hosts: appliance.known_hosts.clone(),
        }
    }

    /// The stock OpenSSH client, set up to use only this user's key and the pinned host key.
    pub fn ssh_command(&self) -> Command {
        let mut command = clean_command("ssh");
        command
            .args(["-F", "/dev/null", "-p", &self.port.to_string(), "-i"])
            .arg(&self.key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                "127.0.0.1",
            ]);
        command
    }

    /// Runs `command` on the appliance with `stdin` as input.
    pub fn run(&self, command: &str, stdin: &[u8]) -> Reply {
        let output = run_with_stdin(self.ssh_command().arg(command), stdin);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        Reply {
            status: output.status.code().unwrap_or(-1),
            json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs a command that reads no input.
    pub fn cmd(&self, command: &str) -> Reply {
        self.run(command, b"")
    }

    /// Accepts approval requests and authorizations from `from` (`approvers allow`).
    pub fn accept(&self, from: &User) {
        let id = from.cmd("whoami").ok()["user_id"]
            .as_str()
            .unwrap()
            .to_owned();
        self.cmd(&format!("approvers allow --from {id}")).ok();
    }

    /// Creates a key and returns its id.
    pub fn create_key(&self, flags: &str) -> String {
        let reply = self.cmd(&format!("create-key {flags}"));
        reply.ok()["key_id"].as_str().unwrap().to_owned()
    }

    /// Environment for the `sshsign` shim to reach the appliance as this user.
    pub fn shim_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SSHSIGN_HOST", "127.0.0.1".to_owned()),
            ("SSHSIGN_PORT", self.port.to_string()),
            ("SSHSIGN_IDENTITY", self.key.display().to_string()),
            (
                "SSHSIGN_KNOWN_HOSTS",
                self.known_hosts.display().to_string(),
            ),
        ]
    }
}

/// Runs `command` with `stdin` as its input and collects its output. The input is written from
/// another thread, and a child that exits without reading it (it refused its arguments) is not an
/// error here: the caller asserts on what it printed.
pub fn run_with_stdin(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

/// Writes `text` to a file in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `ssh-keygen -Y verify` with an allowed_signers file holding `public_key` for `principal`.
pub fn ssh_keygen_verify(
    dir: &Path,
    principal: &str,
    public_key: &str,
    namespace: &str,
    signature: &str,
    payload: &[u8],
) -> Output {
    let allowed = write_file(
        dir,
        "allowed_signers",
        format!("{principal} {public_key}\n"),
    );
    let sig = write_file(dir, "payload.sig", signature);
    let mut command = Command::new("ssh-keygen");
    command
        .args(["-Y", "verify", "-n", namespace, "-I", principal, "-f"])
        .arg(&allowed)
        .arg("-s")
        .arg(&sig);
    run_with_stdin(&mut command, payload)
}

/// Asserts that stock `ssh-keygen -Y verify` accepts `signature` over `payload` in the `git`
/// namespace from `public_key`.
pub fn assert_git_signature(dir: &Path, public_key: &str, signature: &str, payload: &[u8]) {
    let good = ssh_keygen_verify(
        dir,
        "alice@example.com",
        public_key,
        "git",
        signature,
        payload,
    );
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
}

/// Runs `provision ARGS` with `env` and returns its JSON, asserting that it succeeded.
#[track_caller]
pub fn provisioned(store: &SoftHsmStore, env: &[(&str, &str)], args: &[&str]) -> Value {
    let out = provision_with(store, env, args);
    assert!(
        out.status.success(),
        "provision {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `sshsign-server provision keys` on `store`'s token, with `env` on top of its settings: every
/// key the token holds, as the token reports it.
pub fn token_keys(store: &SoftHsmStore, env: &[(&str, &str)]) -> Vec<Value> {
    provisioned(store, env, &["keys"])["keys"]
        .as_array()
        .unwrap()
        .clone()
}

/// A token of [`test_token`]'s kind opened in this process through the PKCS#11 backend, with
/// `sessions` sessions.
///
/// SoftHSM and kryoptic read their configuration once per process, and cargo-nextest runs each
/// test in its own process, so the first call makes a token store and points this process at it.
/// Under plain `cargo test` later tests share the process: they get their own token in the same
/// store, made through the same PKCS#11 call the fixture script uses.
pub fn in_process_token(sessions: usize) -> (Pkcs11Hsm, SoftHsmStore) {
    soft_token(
        test_token(),
        sessions,
        EcParamsForm::default(),
        DeviceLimits::default(),
    )
}

/// Where the appliance tests keep the store: sled (`None`), or, when
/// `SSHSIGN_TEST_DATABASE=postgres` (`make test` runs the suite a third time that way), a
/// PostgreSQL cluster of the test's own and the URL of its database.
pub fn test_database() -> Option<(sshsign::pgcluster::Cluster, String)> {
    match std::env::var("SSHSIGN_TEST_DATABASE").as_deref() {
        Ok("postgres") => {
            let cluster = sshsign::pgcluster::Cluster::start().expect("starting PostgreSQL");
            let url = cluster.create_database("sshsign").expect("createdb");
            Some((cluster, url))
        }
        Ok("sled") | Err(_) => None,
        Ok(other) => panic!("SSHSIGN_TEST_DATABASE={other}: sled or postgres"),
    }
}

/// The software token the appliance tests run on: SoftHSMv2, or kryoptic when
/// `SSHSIGN_TEST_TOKEN=kryoptic` (`make test` runs the suite a second time that way).
pub fn test_token() -> SoftToken {
    match std::env::var("SSHSIGN_TEST_TOKEN").as_deref() {
        Ok("kryoptic") => SoftToken::Kryoptic,
        Ok("softhsm2") | Err(_) => SoftToken::SoftHsm,
        Ok(other) => panic!("SSHSIGN_TEST_TOKEN={other}: softhsm2 or kryoptic"),
    }
}

/// kryoptic's module, built by `make kryoptic` (`make test` does it first).
pub fn kryoptic_module() -> PathBuf {
    let module = std::env::var_os("SSHSIGN_KRYOPTIC_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kryoptic/libkryoptic_pkcs11.so")
        });
    assert!(
        module.is_file(),
        "{} is missing: run `make kryoptic` (make test does)",
        module.display()
    );
    module
}

/// A fresh token on a `kind` store private to this process, opened in this process with
/// `sessions` sessions, curve encoding `ec_params` and `limits`. Each call initialises a new
/// token in the store, so each caller starts with an empty one.
pub fn soft_token(
    kind: SoftToken,
    sessions: usize,
    ec_params: EcParamsForm,
    limits: DeviceLimits,
) -> (Pkcs11Hsm, SoftHsmStore) {
    // One store per kind and process: each module reads its configuration once.
    static STORES: [OnceLock<(TempDir, SoftHsmStore)>; 2] = [OnceLock::new(), OnceLock::new()];
    static COUNTS: [Mutex<usize>; 2] = [Mutex::new(0), Mutex::new(0)];
    let which = kind as usize;
    let (_, store) = STORES[which].get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = match kind {
            SoftToken::SoftHsm => token_store(dir.path()),
            SoftToken::Kryoptic => kryoptic_store(dir.path()),
        };
        // SAFETY: set before the PKCS#11 module is loaded and read only by it; the test harness
        // runs nothing else that reads the environment concurrently at this point.
        unsafe { std::env::set_var(store.conf_variable(), store.conf()) };
        (dir, store)
    });
    let mut count = COUNTS[which].lock().unwrap();
    let label = if *count == 0 {
        store.label.clone()
    } else {
        let label = format!("test-{count}");
        let ctx = module::load(&store.module).unwrap();
        let so_pin = sshsign::secret::read_secret_file(&store.so_pin_file()).unwrap();
        let pin = sshsign::secret::read_secret_file(&store.pin_file()).unwrap();
        module::init_token(&ctx, module::InitSlot::FirstFree, &label, &so_pin, &pin).unwrap();
        label
    };
    *count += 1;
    let hsm = Pkcs11Hsm::open(Pkcs11Config {
        ec_params,
        limits,
        ..Pkcs11Config::new(
            store.module.clone(),
            label.clone(),
            sshsign::secret::read_secret_file(&store.pin_file()).unwrap(),
            sessions,
        )
    })
    .unwrap();
    let mut store = store.clone();
    store.label = label;
    (hsm, store)
}

/// A fresh kryoptic store with one token.
pub fn kryoptic_store(dir: &Path) -> SoftHsmStore {
    SoftHsmStore::create_kryoptic(
        &dir.join("hsm"),
        "sshsign-test",
        Path::new(SERVER),
        &kryoptic_module(),
    )
    .expect("making a kryoptic token")
}

/// Runs `sshsign VERB --jwks JWKS EXTRA... FILE`: an offline check against saved keys.
pub fn offline_check(verb: &str, jwks: &Path, extra: &[&str], file: &Path) -> Output {
    clean_command(SHIM)
        .arg(verb)
        .arg("--jwks")
        .arg(jwks)
        .args(extra)
        .arg(file)
        .output()
        .expect("running sshsign")
}

/// An HTTP response as [`Appliance::http`] read it.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    /// Header lines, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body as JSON, or `Null`.
    pub json: Value,
}

impl HttpReply {
    fn parse(response: &[u8]) -> Self {
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(response)));
        let head = String::from_utf8_lossy(&response[..split]);
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut body = response[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v == "chunked")
        {
            body = dechunk(&body);
        }
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        HttpReply {
            status,
            headers,
            body,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The error code of a JSON error reply.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or_default()
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 4 + size..];
    }
    out
}

/// RFC 4648 base32 (upper case, no padding), as `otpauth://` URIs carry TOTP secrets.
pub fn base32_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes() {
        let value = alphabet.iter().position(|&a| a == c).unwrap() as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.0/8 is all loopback on
/// Linux), to play a second client address.
pub fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
