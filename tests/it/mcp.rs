//! `sshsign mcp` driven by the official MCP Python SDK (`mcp` on PyPI, in `target/tools`), as an
//! agent host would: the handshake, the tools' schemas, signing at once and under co-signature,
//! an approval shown by URL-mode elicitation and decided over SSH while the wait reports
//! progress, offline verification, an audit proof, bad input and a cancelled wait. The script
//! (`mcp_client.py`) asserts what the SDK received; this side checks the results against the
//! appliance with stock tools.

use std::process::Stdio;

use serde_json::Value;

use crate::approvals::user_id;
use crate::common::{Appliance, SHIM, clean_command, offline_check, ssh_keygen_verify, write_file};
use crate::ssh_commands::python_tool;

#[test]
fn an_agent_host_signs_asks_waits_and_verifies_through_the_mcp_server() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let bob = appliance.user("bob");
    let (bob_id, alice_id) = (user_id(&bob), user_id(&alice));
    // Bob decides alice's requests; alice takes bob's grant.
    bob.accept(&alice);
    alice.accept(&bob);
    let file_key = alice.create_key("--scope file");
    let cosign_key = bob.create_key("--scope deploy");
    bob.cmd(&format!(
        "authorize --key-id {cosign_key} --scope deploy --tier cosign --grantee {alice_id}"
    ))
    .ok();

    let bob_ssh = bob.ssh_command();
    let mut argv = vec![bob_ssh.get_program().to_string_lossy().into_owned()];
    argv.extend(bob_ssh.get_args().map(|a| a.to_string_lossy().into_owned()));
    let state = appliance.dir.path().join("state");
    let output = clean_command(python_tool("python"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/mcp_client.py"
        ))
        .envs(alice.shim_env())
        .env("SSHSIGN", SHIM)
        .env("BOB", &bob_id)
        .env("BOB_SSH", serde_json::to_string(&argv).unwrap())
        .env("FILE_KEY", &file_key)
        .env("COSIGN_KEY", &cosign_key)
        .env("XDG_STATE_HOME", &state)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the MCP client failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let out: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));

    // The signatures the agent received verify with stock ssh-keygen, under the keys the
    // appliance lists.
    let dir = appliance.dir.path();
    let public = |owner: &crate::common::User, key: &str| -> String {
        let keys = owner.cmd("keys").ok().clone();
        let found = keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key_id"] == key);
        found.unwrap()["public_key"].as_str().unwrap().to_owned()
    };
    for (owner, key, namespace, reply, payload) in [
        (
            &alice,
            &file_key,
            "file",
            &out["signed"],
            "release notes v2\n",
        ),
        (
            &bob,
            &cosign_key,
            "deploy",
            &out["cosigned"],
            "deploy manifest\n",
        ),
    ] {
        let checked = ssh_keygen_verify(
            dir,
            "agent@example.com",
            &public(owner, key),
            namespace,
            reply["signature"].as_str().unwrap(),
            payload.as_bytes(),
        );
        assert!(checked.status.success(), "{namespace}: {checked:?}");
    }

    // The decision it received verifies with the CLI's own offline check, against the JWKS
    // fetched over HTTP (the server read it over SSH).
    let id = out["approval_id"].as_str().unwrap();
    let kept = write_file(dir, "decision.json", out["approval"].to_string());
    let jwks = appliance.save_jwks(dir);
    let checked = offline_check("verify-approval", &jwks, &["--request-id", id], &kept);
    assert!(checked.status.success(), "{checked:?}");

    // The proof it was given is of the entry the signature's reply named.
    assert_eq!(out["proof"]["entry"]["key_id"], file_key.as_str());
    assert_eq!(out["proof"]["index"], out["signed"]["audit"]["index"]);
    // An unknown tool is a JSON-RPC error (invalid params, -32602, in rmcp), not a result.
    assert!(out["unknown_tool_error"].as_i64().is_some(), "{out}");
    assert_eq!(out["elicitations"], 3);
    // The server went on after everything: it still answers over stock ssh, too.
    alice.cmd("whoami").ok();
}
