//! Bad requests: each gets a clear, stable error code and a non-zero exit status, nothing is
//! lost, and the server goes on serving everyone.

use crate::common::Appliance;

const MIB: usize = 1024 * 1024;

#[test]
fn bad_requests_get_clear_errors_and_the_server_goes_on() {
    let mut appliance = Appliance::start();
    let alice = appliance.user("alice");
    let bob = appliance.user("bob");
    let key = alice.create_key("");

    // The command line.
    let reply = alice.cmd("frobnicate");
    assert_eq!(reply.status, 2);
    assert!(reply.failed_with("unknown_command").contains("frobnicate"));
    let reply = alice.cmd("keys --colour");
    assert_eq!(reply.status, 2);
    assert!(reply.failed_with("unknown_flag").contains("--colour"));
    // A flag without its value (a missing --key-id means "my first key", as in the seed).
    let reply = alice.run("sign --type git --key-id", b"x");
    assert_eq!(reply.status, 2);
    assert!(reply.failed_with("invalid_usage").contains("--key-id"));
    let reply = alice.cmd("create-key --tier sometimes");
    assert!(reply.failed_with("invalid_usage").contains("sometimes"));
    alice
        .cmd(r#"create-key --constraints {"a": 1"#)
        .failed_with("invalid_usage");
    alice.cmd("sign 'unterminated").failed_with("invalid_usage");

    // Malformed JSON and values.
    let reply = alice.cmd(r#"create-key --constraints '{"cap": {"min": 5,}}'"#);
    assert!(
        reply
            .failed_with("invalid_argument")
            .contains("not valid JSON")
    );
    alice
        .cmd(r#"create-key --constraints [1,2]"#)
        .failed_with("invalid_argument");
    alice
        .cmd(r#"create-key --constraints {"cap": 5}"#)
        .failed_with("invalid_argument");
    alice
        .cmd("create-key --expiry yesterday")
        .failed_with("invalid_argument");
    alice
        .cmd("create-key --expiry 0s")
        .failed_with("invalid_argument");
    // Ten years at most: the year 10000 once made formatting the key panic, and `keys` hang.
    for too_far in ["8000y", "7974y", "11y", "9999-12-31T23:59:59Z"] {
        let reply = alice.cmd(&format!("create-key --scope far --expiry {too_far}"));
        assert!(
            reply
                .failed_with("invalid_argument")
                .contains("more than 10 years away"),
            "{too_far}"
        );
    }
    let far = alice.cmd(&format!(
        "authorize --key-id {key} --grantee SHA256:x --expiry 8000y"
    ));
    assert_eq!(far.status, 1, "{far:?}");
    alice
        .cmd("create-key --require-signature")
        .failed_with("invalid_argument");
    alice
        .cmd("create-key --scope 'two words'")
        .failed_with("invalid_argument");
    // None of the refused create-key calls made a key.
    assert_eq!(alice.cmd("keys").ok()["keys"].as_array().unwrap().len(), 1);

    // Payload size: the limit is inclusive, one byte more is refused.
    let limit = vec![b'a'; MIB];
    alice.run(&format!("sign --key-id {key}"), &limit).ok();
    let over = vec![b'a'; MIB + 1];
    let reply = alice.run(&format!("sign --key-id {key}"), &over);
    assert!(reply.failed_with("payload_too_large").contains("1048576"));
    let reply = alice.run("verify --signature x", &over);
    reply.failed_with("payload_too_large");

    // Keys that do not exist or are not yours read the same.
    let unknown = "ak_aaaaaaaaaaaaaaaaaaaaaaaaaa";
    let reply = alice.run(&format!("sign --key-id {unknown}"), b"x");
    assert!(reply.failed_with("unknown_key").contains(unknown));
    bob.run(&format!("sign --key-id {key}"), b"x")
        .failed_with("unknown_key");
    bob.cmd(&format!("revoke --key-id {key}"))
        .failed_with("unknown_key");
    alice
        .run(&format!("sign --key-id {key}"), b"still mine")
        .ok();

    // Namespaces.
    let reply = alice.run(&format!("sign --type '' --key-id {key}"), b"x");
    assert!(reply.failed_with("invalid_namespace").contains("empty"));

    // Signatures that are not, or do not match.
    alice
        .run("verify --signature not-base64!", b"x")
        .failed_with("malformed_signature");
    let signature = alice.run(&format!("sign --key-id {key}"), b"payload").ok()["signature"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = alice.run(&format!("verify --signature '{signature}'"), b"tampered");
    reply.failed_with("invalid_signature");
    let reply = alice.run(
        &format!("verify --type file --signature '{signature}'"),
        b"payload",
    );
    reply.failed_with("namespace_mismatch");
    let reply = alice.run(
        &format!("verify --signature '{signature}' --key-id {unknown}"),
        b"payload",
    );
    reply.failed_with("key_mismatch");

    // Revoking twice.
    alice.cmd(&format!("revoke --key-id {key}")).ok();
    alice
        .cmd(&format!("revoke --key-id {key}"))
        .failed_with("key_revoked");

    // Through all of it the server stayed up and serves everyone.
    assert!(appliance.is_running());
    bob.cmd("whoami").ok();
    let carol = appliance.user("carol");
    let fresh = carol.create_key("");
    carol.run(&format!("sign --key-id {fresh}"), b"x").ok();
    assert!(!appliance.log().contains("panicked"), "{}", appliance.log());
}

#[test]
fn help_and_an_interactive_shell_answer_with_the_grammar() {
    let appliance = Appliance::start();
    let alice = appliance.user("alice");
    let help = alice.cmd("help");
    let text = help.ok()["help"].as_str().unwrap();
    // One JSON document, then a newline.
    assert!(
        help.stdout.starts_with('{') && help.stdout.ends_with("}\n"),
        "{}",
        help.stdout
    );
    for command in ["whoami", "create-key", "keys", "sign", "verify", "revoke"] {
        assert!(text.contains(command), "{text}");
    }
    let flag_help = alice.cmd("sign --help");
    assert!(
        flag_help.ok()["help"]
            .as_str()
            .unwrap()
            .contains("--key-id")
    );

    // `ssh host` with no command: the help, not a hang.
    let output = alice
        .ssh_command()
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("create-key"));
}
