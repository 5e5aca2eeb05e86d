//! git commit signing through the `sshsign` shim, verified by stock OpenSSH.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{Appliance, SHIM, User, clean_command, write_file};

/// A git repository whose environment points the shim at the appliance as `user`.
struct Repo {
    dir: PathBuf,
    home: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Repo {
    fn new(root: &Path, user: &User) -> Self {
        let dir = root.join("repo");
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let shim_dir = Path::new(SHIM).parent().unwrap();
        let path = format!("{}:{}", shim_dir.display(), std::env::var("PATH").unwrap());
        let mut env = user.shim_env();
        env.push(("PATH", path));
        let repo = Repo { dir, home, env };
        repo.git_ok(&["init", "-q", repo.dir.to_str().unwrap()], true);
        for (key, value) in [
            ("user.name", "Alice"),
            ("user.email", "alice@example.com"),
            ("gpg.format", "ssh"),
            ("gpg.ssh.program", "sshsign"),
        ] {
            repo.git_ok(&["config", key, value], false);
        }
        repo
    }

    fn git(&self, args: &[&str], outside: bool) -> Output {
        let mut command: Command = clean_command("git");
        if !outside {
            command.current_dir(&self.dir);
        }
        command
            .args(args)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    #[track_caller]
    fn git_ok(&self, args: &[&str], outside: bool) -> String {
        let output = self.git(args, outside);
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn commit(&self, file: &str, message: &str) -> Output {
        write_file(&self.dir, file, message);
        self.git_ok(&["add", file], false);
        self.git(&["commit", "-q", "-S", "-m", message], false)
    }
}

/// A new key of `user`'s, a repository whose `user.signingkey` is what `signingkey` makes of the
/// key id and public key, one commit signed through the shim, and an allowed_signers file with
/// the key for alice@example.com. Returns the repository and the key id.
fn repo_with_signed_commit(
    appliance: &Appliance,
    user: &User,
    signingkey: impl Fn(&str, &str) -> String,
    message: &str,
) -> (Repo, String) {
    let created = user.cmd("create-key");
    let key_id = created.ok()["key_id"].as_str().unwrap().to_owned();
    let public_key = created.json["public_key"].as_str().unwrap().to_owned();

    let repo = Repo::new(appliance.dir.path(), user);
    repo.git_ok(
        &[
            "config",
            "user.signingkey",
            &signingkey(&key_id, &public_key),
        ],
        false,
    );
    let commit = repo.commit("a.txt", message);
    let stderr = String::from_utf8_lossy(&commit.stderr);
    assert!(commit.status.success(), "{stderr}");

    let allowed = write_file(
        appliance.dir.path(),
        "allowed_signers",
        format!("alice@example.com namespaces=\"git\" {public_key}\n"),
    );
    let allowed = allowed.to_str().unwrap();
    repo.git_ok(&["config", "gpg.ssh.allowedSignersFile", allowed], false);
    (repo, key_id)
}

#[test]
fn commits_signed_through_the_shim_verify_with_stock_openssh() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let (repo, _) = repo_with_signed_commit(
        &appliance,
        &alice,
        |id, _| id.to_owned(),
        "first signed commit",
    );

    // Stock ssh-keygen verifies (git's default gpg.ssh.program)...
    let verified = repo.git(
        &["-c", "gpg.ssh.program=ssh-keygen", "verify-commit", "HEAD"],
        false,
    );
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stderr).contains("Good \"git\" signature"));
    // ...and so does the shim, which hands verification to ssh-keygen.
    repo.git_ok(&["verify-commit", "HEAD"], false);
    let log = repo.git_ok(&["log", "--show-signature", "-1"], false);
    assert!(
        log.contains("Good \"git\" signature for alice@example.com"),
        "{log}"
    );

    // A commit whose message was edited after signing does not verify.
    let original = repo.git_ok(&["cat-file", "commit", "HEAD"], false);
    let forged = original.replace("first signed commit", "first signed commit, edited");
    let forged_file = write_file(appliance.dir.path(), "forged", forged);
    let forged_id = repo
        .git_ok(
            &[
                "hash-object",
                "-t",
                "commit",
                "-w",
                forged_file.to_str().unwrap(),
            ],
            false,
        )
        .trim()
        .to_owned();
    let refused = repo.git(
        &[
            "-c",
            "gpg.ssh.program=ssh-keygen",
            "verify-commit",
            &forged_id,
        ],
        false,
    );
    assert!(!refused.status.success());
    assert!(!String::from_utf8_lossy(&refused.stderr).contains("Good"));
}

#[test]
fn signingkey_may_be_the_literal_public_key_and_refusals_reach_git() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let (repo, key_id) = repo_with_signed_commit(
        &appliance,
        &alice,
        |_, public_key| format!("key::{public_key}"),
        "signed by public key",
    );
    repo.git_ok(&["verify-commit", "HEAD"], false);

    // Once the key is revoked, git reports the appliance's refusal and makes no commit.
    alice.cmd(&format!("revoke --key-id {key_id}")).ok();
    let head = repo.git_ok(&["rev-parse", "HEAD"], false);
    let refused = repo.commit("b.txt", "after revocation");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("key_revoked"), "{stderr}");
    assert_eq!(repo.git_ok(&["rev-parse", "HEAD"], false), head);
}
