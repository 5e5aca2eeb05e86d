//! Checking the appliance's host key: a pinned fingerprint wins; otherwise the key must be in
//! known_hosts for `[host]:port`, read as OpenSSH reads it ([`known_hosts`]: patterns, hashed
//! names, `@revoked`). Refusals say what was presented and how to pin it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::keys::PublicKeyOrCertificate;
use ssh_key::HashAlg;

use super::ClientConfig;
use super::known_hosts::{self, Verdict};

/// The russh client handler: it only judges the host key, and records why it refused.
pub struct HostCheck {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    pinned: Option<String>,
    problem: Arc<Mutex<Option<String>>>,
}

impl HostCheck {
    pub fn new(config: &ClientConfig, problem: Arc<Mutex<Option<String>>>) -> Self {
        HostCheck {
            host: config.host.clone(),
            port: config.port,
            known_hosts: config.known_hosts.clone(),
            pinned: config.host_key_fingerprint.clone(),
            problem,
        }
    }

    fn host_pattern(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }

    fn refuse(&self, message: String) -> bool {
        *self
            .problem
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(message);
        false
    }

    /// Judges `key`; on refusal the reason is recorded for the caller.
    pub fn judge(&self, key: &ssh_key::PublicKey) -> bool {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let line = format!(
            "{} {}",
            self.host_pattern(),
            key.to_openssh().unwrap_or_default()
        );
        let how_to_pin = format!(
            "Compare it with the fingerprint the appliance prints when it starts (or \
             `sshsign-server provision show`, or GET /api/v1/appliance), then pin it with\n  \
             echo '{line}' >> {known_hosts}\nor\n  export SSHSIGN_HOST_KEY_FINGERPRINT={fingerprint}",
            known_hosts = self.known_hosts.display(),
        );
        if let Some(pinned) = &self.pinned {
            return pinned == &fingerprint
                || self.refuse(format!(
                    "host key refused: the appliance at {} presented {fingerprint}, but \
                     SSHSIGN_HOST_KEY_FINGERPRINT pins {pinned}. If the appliance was re-keyed on \
                     purpose, update the pin; otherwise someone may be in the middle.",
                    self.host_pattern()
                ));
        }
        let text = match std::fs::read_to_string(&self.known_hosts) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return self.refuse(format!(
                    "host key refused: cannot read {}: {e}",
                    self.known_hosts.display()
                ));
            }
        };
        match known_hosts::judge(&text, &self.host, self.port, key) {
            Verdict::Known => true,
            Verdict::Unknown => self.refuse(format!(
                "host key refused: the appliance at {} presented {fingerprint} ({}), which is not \
                 in {}.\n{how_to_pin}",
                self.host_pattern(),
                key.algorithm(),
                self.known_hosts.display()
            )),
            Verdict::Revoked { line: number } => self.refuse(format!(
                "host key refused: the appliance at {} presented {fingerprint}, which line \
                 {number} of {} marks @revoked. It must not be trusted again.",
                self.host_pattern(),
                self.known_hosts.display()
            )),
            Verdict::Changed { line: number } => self.refuse(format!(
                "host key refused: the appliance at {} presented {fingerprint}, but line {number} \
                 of {} records a DIFFERENT key for it. Someone may be in the middle. If the \
                 appliance was re-keyed on purpose, remove the old entry with\n  ssh-keygen -R \
                 '{}' -f {}\nand pin the new key. {how_to_pin}",
                self.host_pattern(),
                self.known_hosts.display(),
                self.host_pattern(),
                self.known_hosts.display()
            )),
        }
    }
}

impl russh::client::Handler for HostCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.judge(key),
            PublicKeyOrCertificate::Certificate(_) => self.refuse(
                "host key refused: the appliance presented a host certificate; pin its plain \
                 host key instead"
                    .to_owned(),
            ),
        })
    }
}
