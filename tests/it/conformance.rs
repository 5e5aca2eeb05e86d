//! The REST API against its own OpenAPI document, driven by schemathesis (PyPI) with its
//! standard checks. schemathesis invents callback URLs; the test runs in a network namespace of
//! its own that holds only loopback, so nothing it invents is resolved or dialled elsewhere.

use std::process::Command;

use crate::common::Appliance;
use crate::ssh_commands::python_tool;

/// Moves this test's thread, and every process it starts, into a new network namespace with
/// only a loopback interface (nextest runs each test in a process of its own).
fn only_loopback() {
    // SAFETY: unshare(2) with CLONE_NEWNET touches only the calling thread's namespaces.
    let status = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        status,
        0,
        "unshare(CLONE_NEWNET): {} (the test needs CAP_SYS_ADMIN, as CI's root has)",
        std::io::Error::last_os_error()
    );
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .unwrap();
    assert!(up.success());
    // (`ip` runs in the new namespace; /sys/class/net would show the one sysfs was mounted in.)
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(str::trim))
        .collect();
    assert_eq!(names, ["lo"], "{links}");
}

#[test]
fn schemathesis_finds_the_api_conforms_to_its_document() {
    only_loopback();
    let appliance = Appliance::start_with(&[
        ("SSHSIGN_HTTP_RATE_PER_IP", "1000000"),
        ("SSHSIGN_HTTP_RATE_PER_KEY", "1000000"),
        ("SSHSIGN_QUOTAS", "approval_requests=1000000/min"),
    ]);
    let alice = appliance.user("alice");
    let secret = crate::approvals::api_key(&alice, "approval:create,approval:read");
    let base = format!("http://{}", appliance.http_addr);
    let report = appliance.dir.path().join("schemathesis");
    // The API key goes in a config file, not on the command line. Schema-valid data may be
    // refused with 422 by the rules the document states in words and a schema cannot (a
    // threshold above the number of approvers, a callback that leads inside): the document
    // lists 422 for it, so it counts as an answer to valid data here. A read's `wait` is held
    // at 0: a long poll on a pending request would outlast the request timeout (the gate's
    // tests wait for real).
    let config = crate::common::write_file(
        appliance.dir.path(),
        "schemathesis.toml",
        format!(
            "headers = {{ Authorization = \"Bearer {secret}\" }}\n\
             [parameters]\n\
             \"query.wait\" = 0\n\
             [checks.positive_data_acceptance]\n\
             expected-statuses = [\"2xx\", \"401\", \"403\", \"404\", \"409\", \"422\", \"429\"]\n"
        ),
    );
    let output = Command::new(python_tool("schemathesis"))
        // Its cache of crashes goes in the test's directory, not the checkout.
        .current_dir(appliance.dir.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--url", &base])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance,\
             negative_data_rejection,positive_data_acceptance",
        ])
        .args(["--max-examples", "60", "--seed", "1", "--workers", "1"])
        .args(["--max-time", "60", "--request-timeout", "10"])
        .arg("--report-dir")
        .arg(&report)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The server went on through it all.
    assert_eq!(appliance.http_get("/healthz").0, 200);
}
