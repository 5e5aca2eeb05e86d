//! The HTTP side: health, the appliance's public keys, JWKS, key lookup.

use base64::Engine as _;

use crate::common::{Appliance, provision};

#[test]
fn health_keys_and_jwks() {
    let appliance = Appliance::start();
    let (status, health) = appliance.http_get("/healthz");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["token"]["label"], appliance.store.label.as_str());

    let (status, info) = appliance.http_get("/api/v1/appliance");
    assert_eq!(status, 200);
    assert_eq!(
        info["ssh_host_key"]["fingerprint"],
        appliance.host_key_fingerprint.as_str()
    );
    let shown: serde_json::Value =
        serde_json::from_slice(&provision(&appliance.store, &["show"]).stdout).unwrap();
    assert_eq!(info["keys"], shown["appliance_keys"]);

    // The JWK's x is the decision key's public key.
    let (status, jwks) = appliance.http_get("/.well-known/jwks.json");
    assert_eq!(status, 200);
    let jwk = &jwks["keys"][0];
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().unwrap())
        .unwrap();
    let decision = info["keys"][0]["public_key"].as_str().unwrap();
    assert_eq!(
        sshsign::pubkey::parse_ed25519(decision).unwrap().to_vec(),
        x
    );

    let alice = appliance.user("alice");
    let key_id = alice.create_key("");
    let (status, key) = appliance.http_get(&format!("/api/v1/keys/{key_id}"));
    assert_eq!(status, 200);
    assert_eq!(key["status"], "active");
    assert!(key.get("owner").is_none() && key.get("token_object_id").is_none());
    let (status, missing) = appliance.http_get("/api/v1/keys/ak_aaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "unknown_key");
    assert_eq!(appliance.http_get("/api/v1/keys/..%2f").0, 404);
}
