//! The Debian packages `make deb` builds with cargo-deb (`make test` builds them before the
//! suite): installed by dpkg into a fresh root, run from there, the service's system user made,
//! the unit checked by `systemd-analyze verify` and rated by `systemd-analyze security`, then
//! purged.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{Appliance, clean_command};

/// The package of `name` at this version, as `make deb` leaves it in `target/debian`.
fn package(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian");
    let prefix = format!("{name}_{}-", env!("CARGO_PKG_VERSION"));
    let found = std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            file.starts_with(&prefix) && file.ends_with(".deb")
        });
    found.unwrap_or_else(|| {
        panic!(
            "no {prefix}*.deb in {}: `make deb` builds the packages (`make test` runs it)",
            dir.display()
        )
    })
}

#[track_caller]
fn succeeded(what: &str, output: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what}: {text}");
    text
}

fn field(deb: &Path, name: &str) -> String {
    let output = Command::new("dpkg-deb")
        .arg("--field")
        .arg(deb)
        .arg(name)
        .output()
        .unwrap();
    succeeded("dpkg-deb --field", output).trim().to_owned()
}

/// dpkg acting on the fresh root `root`: maintainer scripts run outside it with `DPKG_ROOT`
/// set (they honour it), and dependencies are not looked for there (an empty root has no libc
/// package; the binaries run on this machine's).
fn dpkg(root: &Path) -> Command {
    let mut command = clean_command("dpkg");
    command
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--force-not-root",
        ])
        .arg(format!("--log={}", root.join("dpkg.log").display()))
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    command
}

#[test]
fn the_packages_install_into_a_fresh_root_run_and_pass_systemd_analyze() {
    let client = package("sshsign");
    let server = package("sshsign-server");

    // What the packages say of themselves.
    assert_eq!(field(&client, "Package"), "sshsign");
    assert_eq!(field(&server, "Package"), "sshsign-server");
    let depends = field(&client, "Depends");
    assert!(
        depends.contains("libc6") && depends.contains("openssh-client"),
        "{depends}"
    );
    let depends = field(&server, "Depends");
    assert!(
        depends.contains("libc6") && depends.contains("systemd"),
        "{depends}"
    );
    let conffiles = Command::new("dpkg-deb")
        .arg("--info")
        .arg(&server)
        .arg("conffiles")
        .output()
        .unwrap();
    let conffiles = succeeded("dpkg-deb --info conffiles", conffiles);
    assert!(
        conffiles.contains("/etc/sshsign/sshsign.toml"),
        "{conffiles}"
    );

    // A fresh root: an empty dpkg database and nothing else.
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "etc",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(file), "").unwrap();
    }
    let installed = dpkg(root)
        .arg("--install")
        .arg(&client)
        .arg(&server)
        .output()
        .unwrap();
    succeeded("dpkg --install", installed);

    // The binaries, installed, say their version and this checkout's commit.
    for (binary, name) in [
        ("usr/bin/sshsign", "sshsign"),
        ("usr/bin/sshsign-server", "sshsign-server"),
    ] {
        let output = clean_command(root.join(binary))
            .arg("--version")
            .output()
            .unwrap();
        let said = succeeded(binary, output);
        assert_eq!(
            said.trim(),
            format!("{name} {}", sshsign::VERSION),
            "the packages are not of this checkout: `make deb` builds them again"
        );
    }
    // The postinst made the service's user, in the root it installed to.
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let user = passwd.lines().find(|l| l.starts_with("sshsign:"));
    let user = user.unwrap_or_else(|| panic!("no sshsign user in {passwd:?}"));
    assert!(
        user.ends_with(":/var/lib/sshsign:/usr/sbin/nologin"),
        "{user}"
    );
    for file in [
        "etc/sshsign/sshsign.toml",
        "usr/share/sshsign/appliance-keys.toml",
        "usr/share/sshsign/hsm-profiles/yubihsm2-pkcs11.toml",
        "usr/share/doc/sshsign/examples/git-server/pre-receive",
        "usr/lib/sysusers.d/sshsign-server.conf",
    ] {
        assert!(root.join(file).is_file(), "{file} is not installed");
    }

    // The installed client works against an appliance.
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let whoami = clean_command(root.join("usr/bin/sshsign"))
        .arg("whoami")
        .envs(alice.shim_env())
        .output()
        .unwrap();
    let whoami = succeeded("the installed sshsign whoami", whoami);
    assert!(whoami.contains("\"user_id\""), "{whoami}");

    // The unit: systemd-analyze finds nothing wrong with it, and rates its sandbox below 2.0.
    let unit = root.join("lib/systemd/system/sshsign-server.service");
    let unit = if unit.exists() {
        unit
    } else {
        root.join("usr/lib/systemd/system/sshsign-server.service")
    };
    assert!(unit.is_file(), "the unit is not installed");
    // The targets and slices a unit's default dependencies name come with systemd, which the
    // package depends on: this machine's, copied in.
    let units = root.join("usr/lib/systemd/system");
    for entry in std::fs::read_dir("/usr/lib/systemd/system").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if (name.ends_with(".target") || name.ends_with(".slice")) && path.is_file() {
            std::fs::copy(&path, units.join(&name)).unwrap();
        }
    }
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("sshsign-server.service")
        .output()
        .unwrap();
    let said = succeeded("systemd-analyze verify", verified);
    assert!(!said.contains("sshsign-server.service:"), "{said}");
    let rated = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(format!("--root={}", root.display()))
        .arg("sshsign-server.service")
        .output()
        .unwrap();
    let rating = String::from_utf8_lossy(&rated.stdout).into_owned();
    let score: f64 = rating
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for sshsign-server.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {rating}"));
    assert!(score < 2.0, "exposure {score}:\n{rating}");

    // Purged, they leave nothing of theirs behind.
    let purged = dpkg(root)
        .args(["--purge", "sshsign-server", "sshsign"])
        .output()
        .unwrap();
    succeeded("dpkg --purge", purged);
    for file in [
        "usr/bin/sshsign",
        "usr/bin/sshsign-server",
        "etc/sshsign/sshsign.toml",
    ] {
        assert!(!root.join(file).exists(), "{file} is left after purge");
    }
}
