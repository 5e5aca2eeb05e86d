//! Names the commit the binaries are built from, for `--version`: `SSHSIGN_COMMIT` if the
//! build sets it (a source tarball has no git history), else `git rev-parse HEAD` in this
//! checkout, else "unknown".

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SSHSIGN_COMMIT");
    let commit = std::env::var("SSHSIGN_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_head)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SSHSIGN_COMMIT={commit}");
}

/// The checked-out commit, abbreviated to 12 hex digits; rebuilt when HEAD moves.
fn git_head() -> Option<String> {
    let git = Path::new(".git");
    if git.is_dir() {
        // HEAD names a branch; the branch's ref file (or packed-refs) names the commit.
        println!("cargo:rerun-if-changed=.git/HEAD");
        println!("cargo:rerun-if-changed=.git/packed-refs");
        if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
            && let Some(reference) = head.trim().strip_prefix("ref: ")
        {
            println!("cargo:rerun-if-changed=.git/{reference}");
        }
    }
    let output = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && commit.bytes().all(|b| b.is_ascii_hexdigit()) && !commit.is_empty())
        .then_some(commit)
}
