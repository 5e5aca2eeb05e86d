//! A throwaway PostgreSQL cluster on this machine, for the tests and the benchmarks: `initdb`
//! and `pg_ctl` from Debian's `postgresql` package, in a directory of its own that is removed
//! when the cluster is dropped. PostgreSQL refuses to run as root, so as root the cluster runs
//! as the `postgres` user (`runuser`). It listens on a Unix socket in its directory, and on
//! 127.0.0.1 when asked, with TLS when given a certificate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no PostgreSQL server found (install Debian's postgresql package)")]
    NotInstalled,
    #[error("{what}: {detail}")]
    Failed { what: String, detail: String },
}

fn failed(what: impl Into<String>, detail: impl std::fmt::Display) -> Error {
    Error::Failed {
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// A certificate and its key for the server's TLS (PEM files).
pub struct TlsFiles<'a> {
    pub certificate: &'a Path,
    pub key: &'a Path,
}

/// A running cluster; stopped (at once) and removed when dropped.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    port: u16,
    /// The server's options, for starting it again.
    options: String,
    stopped: bool,
}

/// The newest server's `bin` directory under `/usr/lib/postgresql`, or the one on `PATH`.
fn bin_dir() -> Result<PathBuf, Error> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
        .ok_or(Error::NotInstalled)
}

fn is_root() -> bool {
    // The effective user id, without a libc dependency: `id -u`.
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|out| out.stdout.trim_ascii() == b"0")
}

impl Cluster {
    /// A new cluster listening on its Unix socket only.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(false, None)
    }

    /// A new cluster listening on its Unix socket and on 127.0.0.1 (with TLS if `tls` is given).
    pub fn start_tcp(tls: Option<TlsFiles<'_>>) -> Result<Self, Error> {
        Self::start_with(true, tls)
    }

    fn start_with(tcp: bool, tls: Option<TlsFiles<'_>>) -> Result<Self, Error> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let bin = bin_dir()?;
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!(
            "sshsign-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| failed(dir.display().to_string(), e))?;
        let mut cluster = Cluster {
            dir,
            bin,
            as_postgres,
            port: 5432,
            options: String::new(),
            stopped: true,
        };
        if as_postgres {
            cluster.run(
                Command::new("chown").arg("postgres:").arg(&cluster.dir),
                "chown",
            )?;
        }
        let mut options = format!("-k {} -c fsync=on", cluster.dir.display());
        if tcp {
            cluster.port = free_port()?;
            options.push_str(" -c listen_addresses=127.0.0.1");
        } else {
            options.push_str(" -c listen_addresses=''");
        }
        options.push_str(&format!(" -p {}", cluster.port));
        if let Some(tls) = tls {
            for (from, to) in [(tls.certificate, "server.crt"), (tls.key, "server.key")] {
                let to = cluster.dir.join(to);
                std::fs::copy(from, &to).map_err(|e| failed(from.display().to_string(), e))?;
                cluster.run(Command::new("chmod").arg("600").arg(&to), "chmod")?;
                if as_postgres {
                    cluster.run(Command::new("chown").arg("postgres:").arg(&to), "chown")?;
                }
            }
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                cluster.dir.display()
            ));
        }
        cluster.options = options;
        let data = cluster.dir.join("data");
        cluster.run(
            cluster
                .tool("initdb")
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
                .arg("-D")
                .arg(&data),
            "initdb",
        )?;
        cluster.start_again()?;
        Ok(cluster)
    }

    /// Starts the server (again, after [`Cluster::kill`]) on the same files and port.
    pub fn start_again(&mut self) -> Result<(), Error> {
        self.run(
            self.tool("pg_ctl")
                .args(["-w", "-t", "60", "start", "-o", &self.options, "-D"])
                .arg(self.dir.join("data"))
                .arg("-l")
                .arg(self.dir.join("server.log")),
            "pg_ctl start",
        )?;
        self.stopped = false;
        Ok(())
    }

    /// A command running one of the server's tools as the cluster's user.
    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, command: &mut Command, what: &str) -> Result<(), Error> {
        let out = command.output().map_err(|e| failed(what, e))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            return Err(failed(
                what,
                format!(
                    "{}{}{log}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            ));
        }
        Ok(())
    }

    /// Makes a database; returns the key=value connection string for it over the Unix socket.
    pub fn create_database(&self, name: &str) -> Result<String, Error> {
        self.run(
            self.tool("createdb").arg("-h").arg(&self.dir).args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ]),
            "createdb",
        )?;
        Ok(self.socket_url(name))
    }

    /// The connection string for `database` over the Unix socket.
    pub fn socket_url(&self, database: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={database}",
            self.dir.display(),
            self.port
        )
    }

    /// The cluster's data directory (its tables and WAL).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The port on 127.0.0.1 (for a cluster started with [`Cluster::start_tcp`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `sql` in `database` with `psql`; returns what it printed (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, Error> {
        let out = self
            .tool("psql")
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", sql])
            .output()
            .map_err(|e| failed("psql", e))?;
        if !out.status.success() {
            return Err(failed("psql", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the server at once (as a crash would), keeping its files.
    pub fn kill(&mut self) -> Result<(), Error> {
        self.stopped = true;
        self.run(
            self.tool("pg_ctl")
                .args(["-w", "stop", "-m", "immediate", "-D"])
                .arg(self.dir.join("data")),
            "pg_ctl stop",
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port on 127.0.0.1 nobody listens on now.
fn free_port() -> Result<u16, Error> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| failed("a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| failed("a free port", e))?
        .port();
    Ok(port)
}
