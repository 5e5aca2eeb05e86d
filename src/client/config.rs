//! Where the client finds the appliance and how it proves who it is.
//!
//! From, strongest first: `SSHSIGN_*` environment variables, then
//! `$XDG_CONFIG_HOME/sshsign/config.toml` (or `~/.config/sshsign/config.toml`), then defaults.
//!
//! | variable | file key | default |
//! |---|---|---|
//! | `SSHSIGN_HOST` | `host` | (required) |
//! | `SSHSIGN_PORT` | `port` | 22 |
//! | `SSHSIGN_USER` | `user` | `$USER` |
//! | `SSHSIGN_IDENTITY` | `identity` | ssh-agent, then `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` |
//! | `SSHSIGN_KNOWN_HOSTS` | `known_hosts` | `~/.ssh/known_hosts` |
//! | `SSHSIGN_HOST_KEY_FINGERPRINT` | `host_key_fingerprint` | (none: use known_hosts) |

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Error;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    identity: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    host_key_fingerprint: Option<String>,
}

/// How to reach the appliance.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// A private key file; `None` tries ssh-agent and the usual files.
    pub identity: Option<PathBuf>,
    /// Private key files tried after the agent when no identity is given.
    pub default_identities: Vec<PathBuf>,
    pub known_hosts: PathBuf,
    /// `SHA256:...`: accept exactly this host key, whatever known_hosts says.
    pub host_key_fingerprint: Option<String>,
}

impl ClientConfig {
    /// Reads the process environment and the user's config file.
    pub fn load() -> Result<Self, Error> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let config_dir = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".config")));
        let file = match config_dir.map(|d| d.join("sshsign/config.toml")) {
            Some(path) if path.exists() => read_file(&path)?,
            _ => FileConfig::default(),
        };
        Self::resolve(|name| std::env::var(name).ok(), file, home.as_deref())
    }

    fn resolve(
        var: impl Fn(&str) -> Option<String>,
        file: FileConfig,
        home: Option<&Path>,
    ) -> Result<Self, Error> {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let host = var("SSHSIGN_HOST").or(file.host).ok_or_else(|| {
            Error::Config(
                "no appliance configured: set SSHSIGN_HOST (and SSHSIGN_PORT), or host = \"...\" \
                 in ~/.config/sshsign/config.toml"
                    .to_owned(),
            )
        })?;
        let port = match var("SSHSIGN_PORT") {
            Some(text) => text
                .parse()
                .map_err(|_| Error::Config(format!("SSHSIGN_PORT {text:?} is not a port")))?,
            None => file.port.unwrap_or(22),
        };
        let ssh_dir = home.map(|h| h.join(".ssh")).unwrap_or_default();
        Ok(ClientConfig {
            host,
            port,
            user: var("SSHSIGN_USER")
                .or(file.user)
                .or_else(|| var("USER"))
                .unwrap_or_else(|| "sshsign".to_owned()),
            identity: var("SSHSIGN_IDENTITY").map(PathBuf::from).or(file.identity),
            default_identities: ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|name| ssh_dir.join(name))
                .collect(),
            known_hosts: var("SSHSIGN_KNOWN_HOSTS")
                .map(PathBuf::from)
                .or(file.known_hosts)
                .unwrap_or_else(|| ssh_dir.join("known_hosts")),
            host_key_fingerprint: var("SSHSIGN_HOST_KEY_FINGERPRINT").or(file.host_key_fingerprint),
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_over_file_over_defaults() {
        let file: FileConfig = toml::from_str("host = \"file-host\"\nport = 2200\n").unwrap();
        let config = ClientConfig::resolve(
            |name| (name == "SSHSIGN_PORT").then(|| "2222".to_owned()),
            file,
            Some(Path::new("/home/u")),
        )
        .unwrap();
        assert_eq!(config.host, "file-host");
        assert_eq!(config.port, 2222);
        assert_eq!(
            config.known_hosts,
            PathBuf::from("/home/u/.ssh/known_hosts")
        );
        assert_eq!(
            config.default_identities[0],
            PathBuf::from("/home/u/.ssh/id_ed25519")
        );
    }

    #[test]
    fn host_is_required_and_port_checked() {
        let none = ClientConfig::resolve(|_| None, FileConfig::default(), None);
        assert!(none.unwrap_err().to_string().contains("SSHSIGN_HOST"));
        let bad = ClientConfig::resolve(
            |name| match name {
                "SSHSIGN_HOST" => Some("h".into()),
                "SSHSIGN_PORT" => Some("http".into()),
                _ => None,
            },
            FileConfig::default(),
            None,
        );
        assert!(bad.is_err());
        assert!(toml::from_str::<FileConfig>("password = \"x\"").is_err());
    }
}
