//! Judging a host key against a known_hosts file as OpenSSH does (sshd(8), "SSH_KNOWN_HOSTS
//! FILE FORMAT"): host patterns with `*` and `?` and `!` negation, `[host]:port` for other
//! ports, hashed names (`|1|salt|hash`, HMAC-SHA1), `@revoked` keys refused whatever else the
//! file says, and `@cert-authority` lines, which name no host key. Lines are parsed by
//! `ssh-key`; a line it cannot read is skipped, as OpenSSH skips it.

use ssh_key::PublicKey;
use ssh_key::known_hosts::{Entry, HostPatterns, KnownHosts, Marker};

/// What the file says about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for the host lists this key.
    Known,
    /// An `@revoked` line for the host lists this key (line number, from 1).
    Revoked { line: usize },
    /// Lines for the host list other keys, none this one (the first such line).
    Changed { line: usize },
    /// No line is for the host.
    Unknown,
}

/// How known_hosts names `host` on `port`.
fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    }
}

/// `*` any run of characters, `?` any one, case-insensitive (OpenSSH's `match_pattern`).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob(rest, &text[skip..])),
        Some((b'?', rest)) => text.split_first().is_some_and(|(_, t)| glob(rest, t)),
        Some((p, rest)) => text
            .split_first()
            .is_some_and(|(t, tail)| p.eq_ignore_ascii_case(t) && glob(rest, tail)),
    }
}

/// Whether `patterns` name `name`: a negated pattern that matches rules the line out;
/// otherwise any pattern that matches rules it in.
fn names(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::Patterns(list) => {
            let mut matched = false;
            for pattern in list {
                match pattern.strip_prefix('!') {
                    Some(negated) if glob(negated.as_bytes(), name.as_bytes()) => return false,
                    Some(_) => {}
                    None => matched |= glob(pattern.as_bytes(), name.as_bytes()),
                }
            }
            matched
        }
        HostPatterns::HashedName { salt, hash } => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
            ring::hmac::verify(&key, name.as_bytes(), hash).is_ok()
        }
    }
}

fn same_key(entry: &Entry, key: &PublicKey) -> bool {
    entry.public_key().key_data() == key.key_data()
}

/// Judges `key` for `host` on `port` against the known_hosts `text`.
pub fn judge(text: &str, host: &str, port: u16, key: &PublicKey) -> Verdict {
    let name = host_name(host, port);
    let mut known = false;
    let mut changed = None;
    // Line numbers: KnownHosts skips blank and comment lines, so count them here.
    let lines = text.lines().enumerate().filter(|(_, line)| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with('#')
    });
    for (number, line) in lines {
        let Some(Ok(entry)) = KnownHosts::new(line).next() else {
            continue;
        };
        if !names(entry.host_patterns(), &name) {
            continue;
        }
        match entry.marker() {
            Some(Marker::Revoked) if same_key(&entry, key) => {
                return Verdict::Revoked { line: number + 1 };
            }
            Some(_) => {}
            None if same_key(&entry, key) => known = true,
            None => {
                changed.get_or_insert(number + 1);
            }
        }
    }
    match (known, changed) {
        (true, _) => Verdict::Known,
        (false, Some(line)) => Verdict::Changed { line },
        (false, None) => Verdict::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJL2TpwIPrQxveqMcjX6Ibazn/lH4CgP2DESYh/QuhOa";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMovGEzJQPAvdX7n/0QVH/fn2DG7xHJfl4YP2hslFU1+";
    /// `[appliance.example]:2222 KEY`, hashed by OpenSSH 9.2's `ssh-keygen -H`.
    const HASHED: &str = "|1|L6SmtMzGPpJxYJCgy7wEfDv+wHM=|O+aWwwoTgeAW/Ns+5nYQOySu7go=";

    fn key() -> PublicKey {
        PublicKey::from_openssh(KEY).unwrap()
    }

    fn verdict(file: &str) -> Verdict {
        judge(file, "Appliance.example", 2222, &key())
    }

    #[test]
    fn hosts_match_as_openssh_matches_them() {
        // Plain, wildcard, a list, a hashed name.
        for line in [
            format!("[appliance.example]:2222 {KEY}"),
            format!("[*.example]:2222 {KEY}"),
            format!("[appliance.exampl?]:2222 {KEY}"),
            format!("cvs.example.net,[appliance.example]:2222,192.0.2.10 {KEY}"),
            format!("{HASHED} {KEY}"),
        ] {
            assert_eq!(verdict(&line), Verdict::Known, "{line}");
        }
        // Other ports, other hosts, a negation that rules the line out.
        for line in [
            format!("appliance.example {KEY}"),
            format!("[appliance.example]:22 {KEY}"),
            format!("[other.example]:2222 {KEY}"),
            format!("[*.example]:2222,![appliance.*]:2222 {KEY}"),
            format!("{HASHED}x {KEY}"),
        ] {
            assert_eq!(verdict(&line), Verdict::Unknown, "{line}");
        }
        // Port 22 is written without brackets.
        let plain = format!("appliance.example {KEY}");
        assert_eq!(
            judge(&plain, "appliance.example", 22, &key()),
            Verdict::Known
        );
    }

    #[test]
    fn a_revoked_key_is_refused_whatever_else_the_file_says() {
        let file =
            format!("# sshsign appliance\n\n[appliance.example]:2222 {KEY}\n@revoked * {KEY}\n");
        assert_eq!(verdict(&file), Verdict::Revoked { line: 4 });
        // Revoking another key changes nothing for this one.
        let file = format!("[appliance.example]:2222 {KEY}\n@revoked * {OTHER}\n");
        assert_eq!(verdict(&file), Verdict::Known);
    }

    #[test]
    fn another_key_for_the_host_is_a_change_and_a_ca_line_names_no_host_key() {
        let file = format!("# x\n[appliance.example]:2222 {OTHER}\n");
        assert_eq!(verdict(&file), Verdict::Changed { line: 2 });
        // A key listed both as the host's and as a certificate authority is the host's.
        let file = format!("@cert-authority *.example {KEY}\n[appliance.example]:2222 {KEY}\n");
        assert_eq!(verdict(&file), Verdict::Known);
        // As a certificate authority alone, it is not a host key.
        let file = format!("@cert-authority [*.example]:2222 {KEY}\n");
        assert_eq!(verdict(&file), Verdict::Unknown);
        // Lines that cannot be read are skipped, as OpenSSH skips them.
        let file = format!(
            "closenet,192.0.2.53 1024 37 159093\n@gibberish * {KEY}\n[appliance.example]:2222 {KEY}\n"
        );
        assert_eq!(verdict(&file), Verdict::Known);
    }
}
