//! The store on PostgreSQL, for several appliances sharing one state.
//!
//! Every tree is a range of one table, `sshsign_records (tree, key, value)`, keyed by
//! `(tree, key)`: the layout of Vault's PostgreSQL storage, and what lets every store operation
//! keep its meaning. A compare-and-swap is one `UPDATE … WHERE value = old` (or an `INSERT … ON
//! CONFLICT DO NOTHING`, or a `DELETE … WHERE value = old`), so of two appliances changing a
//! request at once, one does; a transaction runs `SERIALIZABLE` and runs again after a
//! serialization failure. A commit is durable when it returns (with the server's default
//! `synchronous_commit`), so [`Engine::flush`](super::engine::Engine::flush) has nothing to do.
//!
//! The store's callers are synchronous (sled answers from memory). Here each call takes a
//! connection from a small pool and waits for PostgreSQL's answer on the calling thread; the
//! connections' sockets are driven by a runtime of their own on a thread of their own, so a
//! caller on an async worker never waits for work that only its own runtime could do.
//!
//! Migrations live in `migrations/postgres/`, numbered; start-up applies those the database
//! lacks, one transaction each, under an advisory lock, so appliances starting together apply
//! each once. A database migrated by a newer build is refused, not guessed at.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

mod tlog;

pub use self::tlog::{LogHead, LogTransaction};

use super::engine::{Entries, Span, TreeName};
use super::{Error, Result};

/// A failure PostgreSQL reported, or the connection's.
pub type DbError = tokio_postgres::Error;

/// The migrations, in order: (version, what it does, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "records and the sequence",
        include_str!("../../migrations/postgres/0001_records.sql"),
    ),
    (
        2,
        "the shared audit log",
        include_str!("../../migrations/postgres/0002_audit_log.sql"),
    ),
];

/// The advisory lock migrations run under ("sshsign" in ASCII).
const MIGRATION_LOCK: i64 = 0x0073_7368_7369_676e;

/// How long a caller waits for a free connection before giving up.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// How many times a transaction runs before a run of conflicts is reported as an error.
const TRANSACTION_TRIES: usize = 100;

/// Where the database is and how to reach it.
pub struct Settings {
    /// A `postgres://` URL or a `key=value` connection string. It may hold a password.
    pub url: SecretString,
    /// The password, when the URL has none.
    pub password: Option<SecretString>,
    /// PEM certificates to trust for the server's, besides the public roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Connections at most.
    pub pool: usize,
}

/// A handle on the database; cloning shares the pool.
#[derive(Clone)]
pub struct Postgres {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("pool", &self.inner.max)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: tokio_postgres::Config,
    tls: Tls,
    /// The runtime driving the connections; its thread ends when `_stop` is dropped.
    runtime: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
    pool: Mutex<Pool>,
    freed: Condvar,
    max: usize,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Arc<Conn>>,
    open: usize,
}

#[derive(Clone)]
enum Tls {
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
    None,
}

/// One connection and the statements it has prepared.
struct Conn {
    client: Client,
    statements: Mutex<HashMap<String, Statement>>,
}

/// A connection taken from the pool; back in the pool when dropped, unless it broke.
struct Lease<'a> {
    inner: &'a Inner,
    conn: Arc<Conn>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        if self.conn.client.is_closed() {
            pool.open = pool.open.saturating_sub(1);
        } else {
            pool.idle.push(Arc::clone(&self.conn));
        }
        self.inner.freed.notify_one();
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    futures_executor::block_on(future)
}

/// Whether a host is this machine (a connection that never leaves it may go without TLS).
fn is_local(host: &Host) -> bool {
    match host {
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    }
}

fn database(message: impl Into<String>) -> Error {
    Error::Database(message.into())
}

impl Postgres {
    /// Connects, and brings the schema up to date.
    pub fn open(settings: &Settings) -> Result<Self> {
        // libpq's names for the checks our TLS always makes (the chain and the host name).
        let url = settings
            .url
            .expose_secret()
            .replace("sslmode=verify-full", "sslmode=require")
            .replace("sslmode=verify-ca", "sslmode=require");
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| database(format!("the database URL does not parse: {e}")))?;
        if let Some(password) = &settings.password {
            config.password(password.expose_secret());
        }
        if config.get_application_name().is_none() {
            config.application_name("sshsign");
        }
        config.connect_timeout(Duration::from_secs(10));
        let remote = config.get_hosts().iter().any(|host| !is_local(host))
            || !config.get_hostaddrs().iter().all(|ip| ip.is_loopback());
        let tls = match config.get_ssl_mode() {
            SslMode::Require => Tls::Rustls(tls_connector(settings.ca_file.as_deref())?),
            _ if remote => {
                return Err(database(
                    "a database on another machine must be reached over TLS: add \
                     sslmode=require (or verify-full) to its URL",
                ));
            }
            _ => Tls::None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| database(format!("starting the database runtime: {e}")))?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("store-postgres".to_owned())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .map_err(|e| database(format!("starting the database thread: {e}")))?;
        let postgres = Postgres {
            inner: Arc::new(Inner {
                config,
                tls,
                runtime: handle,
                _stop: stop,
                pool: Mutex::default(),
                freed: Condvar::new(),
                max: settings.pool.max(1),
            }),
        };
        postgres.migrate()?;
        Ok(postgres)
    }

    fn connect(&self) -> Result<Conn> {
        let config = self.inner.config.clone();
        let tls = self.inner.tls.clone();
        let connecting = self.inner.runtime.spawn(async move {
            let client = match tls {
                Tls::Rustls(tls) => {
                    let (client, connection) = config.connect(tls).await?;
                    tokio::spawn(drive(connection));
                    client
                }
                Tls::None => {
                    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                    tokio::spawn(drive(connection));
                    client
                }
            };
            Ok::<_, DbError>(client)
        });
        let client = block_on(connecting)
            .map_err(|e| database(format!("the database runtime stopped: {e}")))??;
        Ok(Conn {
            client,
            statements: Mutex::default(),
        })
    }

    /// A connection: an idle one, a new one while the pool has room, or the next one freed.
    fn lease(&self) -> Result<Lease<'_>> {
        let inner = &*self.inner;
        let mut pool = inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            while let Some(conn) = pool.idle.pop() {
                if !conn.client.is_closed() {
                    return Ok(Lease { inner, conn });
                }
                pool.open = pool.open.saturating_sub(1);
            }
            if pool.open < inner.max {
                // Counted before connecting, so that others wait; a failure gives the place
                // back.
                pool.open += 1;
                drop(pool);
                return match self.connect() {
                    Ok(conn) => Ok(Lease {
                        inner,
                        conn: Arc::new(conn),
                    }),
                    Err(e) => {
                        let mut pool = inner.pool.lock().unwrap_or_else(|e| e.into_inner());
                        pool.open = pool.open.saturating_sub(1);
                        inner.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let (next, waited) = inner
                .freed
                .wait_timeout(pool, POOL_WAIT)
                .unwrap_or_else(|e| e.into_inner());
            pool = next;
            if waited.timed_out() && pool.idle.is_empty() && pool.open >= inner.max {
                return Err(database(format!(
                    "every one of the {} database connections stayed busy for {} s",
                    inner.max,
                    POOL_WAIT.as_secs()
                )));
            }
        }
    }

    /// Applies the migrations the database lacks, under the advisory lock.
    fn migrate(&self) -> Result<()> {
        let conn = self.lease()?;
        let client = &conn.client;
        block_on(client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]))?;
        let outcome = block_on(async {
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS sshsign_migrations (
                         version     integer PRIMARY KEY,
                         description text NOT NULL,
                         applied_at  timestamptz NOT NULL DEFAULT now()
                     )",
                )
                .await?;
            let row = client
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM sshsign_migrations",
                    &[],
                )
                .await?;
            let current: i32 = row.get(0);
            Ok::<_, DbError>(current)
        });
        let applied = outcome.map_err(Error::from).and_then(|current| {
            let known = MIGRATIONS.last().map_or(0, |m| m.0);
            if current > known {
                return Err(database(format!(
                    "the database's schema is at version {current}, made by a newer sshsign; \
                     this build knows versions up to {known}"
                )));
            }
            for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
                block_on(async {
                    client.batch_execute("BEGIN").await?;
                    let done = async {
                        client.batch_execute(sql).await?;
                        client
                            .execute(
                                "INSERT INTO sshsign_migrations (version, description) \
                                 VALUES ($1, $2)",
                                &[version, description],
                            )
                            .await?;
                        client.batch_execute("COMMIT").await
                    }
                    .await;
                    if done.is_err() {
                        let _ = client.batch_execute("ROLLBACK").await;
                    }
                    done
                })?;
                tracing::info!(version, description, "applied a database migration");
            }
            Ok(())
        });
        block_on(client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]))?;
        applied
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i32> {
        let conn = self.lease()?;
        let row = block_on(conn.client.query_one(
            "SELECT coalesce(max(version), 0) FROM sshsign_migrations",
            &[],
        ))?;
        Ok(row.get(0))
    }

    pub fn get(&self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let conn = self.lease()?;
        Ok(conn.get(tree, key)?)
    }

    pub fn insert(&self, tree: TreeName, key: &[u8], value: &[u8]) -> Result<()> {
        let conn = self.lease()?;
        Ok(conn.insert(tree, key, value)?)
    }

    pub fn remove(&self, tree: TreeName, key: &[u8]) -> Result<bool> {
        let conn = self.lease()?;
        Ok(conn.remove(tree, key)? > 0)
    }

    pub fn compare_and_swap(
        &self,
        tree: TreeName,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        let conn = self.lease()?;
        let name = tree.name();
        let changed = match (old, new) {
            (None, Some(new)) => conn.execute(
                "INSERT INTO sshsign_records (tree, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                &[&name, &key, &new],
            )?,
            (Some(old), Some(new)) => conn.execute(
                "UPDATE sshsign_records SET value = $4 \
                 WHERE tree = $1 AND key = $2 AND value = $3",
                &[&name, &key, &old, &new],
            )?,
            (Some(old), None) => conn.execute(
                "DELETE FROM sshsign_records WHERE tree = $1 AND key = $2 AND value = $3",
                &[&name, &key, &old],
            )?,
            (None, None) => return Ok(conn.get(tree, key)?.is_none()),
        };
        Ok(changed == 1)
    }

    pub fn scan(&self, tree: TreeName, span: &Span, skip: usize, limit: usize) -> Result<Entries> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let conn = self.lease()?;
        let (clause, bounds) = span_clause(span);
        let sql = format!(
            "SELECT key, value FROM sshsign_records WHERE tree = $1{clause} \
             ORDER BY key OFFSET ${} LIMIT ${}",
            bounds.len() + 2,
            bounds.len() + 3
        );
        let (skip, limit) = (to_i64(skip), to_i64(limit));
        let name = tree.name();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&name];
        params.extend(bounds.iter().map(|b| b as &(dyn ToSql + Sync)));
        params.push(&skip);
        params.push(&limit);
        let rows = conn.query(&sql, &params)?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get::<_, Vec<u8>>(0), row.get::<_, Vec<u8>>(1)))
            .collect())
    }

    pub fn count(&self, tree: TreeName, span: &Span) -> Result<usize> {
        let conn = self.lease()?;
        let (clause, bounds) = span_clause(span);
        let sql = format!("SELECT count(*) FROM sshsign_records WHERE tree = $1{clause}");
        let name = tree.name();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&name];
        params.extend(bounds.iter().map(|b| b as &(dyn ToSql + Sync)));
        let rows = conn.query(&sql, &params)?;
        let count: i64 = rows.first().map_or(0, |row| row.get(0));
        Ok(usize::try_from(count).unwrap_or(0))
    }

    pub fn sequence(&self) -> Result<u64> {
        let conn = self.lease()?;
        let rows = conn.query("SELECT nextval('sshsign_sequence')", &[])?;
        let next: i64 = rows.first().map_or(0, |row| row.get(0));
        u64::try_from(next).map_err(|_| database("the sequence gave a negative number"))
    }

    /// Runs `work` in a `SERIALIZABLE` transaction, again after each serialization failure,
    /// deadlock or unique-key race (the next run sees the other writer's row).
    pub fn transaction<T>(
        &self,
        work: impl Fn(&Transaction<'_>) -> Result<T, super::engine::TxError>,
    ) -> Result<T> {
        use super::engine::TxError;
        let conn = self.lease()?;
        let retry = |e: &DbError| {
            e.code().is_some_and(|code| {
                [
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                    SqlState::UNIQUE_VIOLATION,
                ]
                .contains(code)
            })
        };
        for tried in 0..TRANSACTION_TRIES {
            if tried > 0 {
                // Let the writer in the way finish: 1 ms more each time, at most 20.
                std::thread::sleep(Duration::from_millis(tried.min(20) as u64));
            }
            block_on(
                conn.client
                    .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE"),
            )?;
            let tx = Transaction { conn: &conn };
            let outcome = match work(&tx) {
                Ok(value) => match block_on(conn.client.batch_execute("COMMIT")) {
                    Ok(()) => return Ok(value),
                    // A failed COMMIT has ended the transaction.
                    Err(e) if retry(&e) => continue,
                    Err(e) => return Err(e.into()),
                },
                Err(e) => e,
            };
            block_on(conn.client.batch_execute("ROLLBACK"))?;
            match outcome {
                TxError::Postgres(e) if retry(&e) => continue,
                TxError::Postgres(e) => return Err(e.into()),
                TxError::Abort(e) => return Err(e),
                TxError::Sled(e) => return Err(database(format!("{e}"))),
            }
        }
        Err(database(format!(
            "a transaction met a conflict {TRANSACTION_TRIES} times running"
        )))
    }
}

/// Drives one connection's socket until it closes.
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::warn!(error = %e, "a database connection ended");
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The SQL for a span's bounds (after `tree = $1`), and the bound keys as parameters `$2`...
fn span_clause(span: &Span) -> (String, Vec<Vec<u8>>) {
    let mut clause = String::new();
    let mut bounds = Vec::new();
    for (bound, including, excluding) in [(&span.from, ">=", ">"), (&span.to, "<=", "<")] {
        let (op, key) = match bound {
            Bound::Included(key) => (including, key),
            Bound::Excluded(key) => (excluding, key),
            Bound::Unbounded => continue,
        };
        bounds.push(key.clone());
        clause.push_str(&format!(" AND key {op} ${}", bounds.len() + 1));
    }
    (clause, bounds)
}

fn tls_connector(ca_file: Option<&Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| database(format!("reading {}: {e}", path.display())))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| database(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| database(format!("{}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(database(format!(
                "{} holds no PEM certificate",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| database(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl Conn {
    fn statement(&self, sql: &str) -> Result<Statement, DbError> {
        let mut statements = self.statements.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(statement) = statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = block_on(self.client.prepare(sql))?;
        statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, DbError> {
        let statement = self.statement(sql)?;
        block_on(self.client.query(&statement, params))
    }

    fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        let statement = self.statement(sql)?;
        block_on(self.client.execute(&statement, params))
    }

    fn get(&self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        let rows = self.query(
            "SELECT value FROM sshsign_records WHERE tree = $1 AND key = $2",
            &[&tree.name(), &key],
        )?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    fn insert(&self, tree: TreeName, key: &[u8], value: &[u8]) -> Result<(), DbError> {
        self.execute(
            "INSERT INTO sshsign_records (tree, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (tree, key) DO UPDATE SET value = excluded.value",
            &[&tree.name(), &key, &value],
        )
        .map(drop)
    }

    fn remove(&self, tree: TreeName, key: &[u8]) -> Result<u64, DbError> {
        self.execute(
            "DELETE FROM sshsign_records WHERE tree = $1 AND key = $2",
            &[&tree.name(), &key],
        )
    }
}

/// A transaction under way on one connection (see [`Postgres::transaction`]).
pub struct Transaction<'a> {
    conn: &'a Conn,
}

impl Transaction<'_> {
    pub fn get(&self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        self.conn.get(tree, key)
    }

    pub fn insert(&self, tree: TreeName, key: &[u8], value: &[u8]) -> Result<(), DbError> {
        self.conn.insert(tree, key, value)
    }

    pub fn remove(&self, tree: TreeName, key: &[u8]) -> Result<(), DbError> {
        self.conn.remove(tree, key).map(drop)
    }
}
