use super::*;
use crate::policy::{Authorization, Terms, Tier};

use super::engine::TreeName;
use crate::pgcluster::Cluster;

/// The engine a test runs on.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Sled,
    Postgres,
}

/// Where a test's store lives, removed when dropped.
#[allow(dead_code)] // held for its `Drop`
enum Place {
    Sled(tempfile::TempDir),
    Postgres(Cluster),
}

/// A store whose data key is not open yet, in a place of its own.
fn unsealed(kind: Kind) -> (Place, Store) {
    match kind {
        Kind::Sled => {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            (Place::Sled(dir), store)
        }
        Kind::Postgres => {
            let cluster = Cluster::start().unwrap();
            let url = cluster.create_database("sshsign").unwrap();
            let store = Store::open_postgres(&postgres::Settings {
                url: url.into(),
                password: None,
                ca_file: None,
                pool: 4,
            })
            .unwrap();
            (Place::Postgres(cluster), store)
        }
    }
}

fn store(kind: Kind) -> (Place, Store) {
    let (place, store) = unsealed(kind);
    let key = [9u8; 32];
    store.unseal_with(Sealer::new(&key, &crate::seal::check_value(&key)).unwrap());
    (place, store)
}

/// Each test, once on each engine.
macro_rules! on_both_engines {
    ($($test:ident),* $(,)?) => {
        mod on_sled {
            $(#[test] fn $test() { super::$test(super::Kind::Sled) })*
        }
        mod on_postgres {
            $(#[test] fn $test() { super::$test(super::Kind::Postgres) })*
        }
    };
}

fn user(id: &str) -> UserRecord {
    UserRecord {
        user_id: id.into(),
        created_at: 1,
        ssh_keys: vec![format!("SHA256:{id}")],
    }
}

fn ssh_key(fingerprint: &str, user_id: &str) -> SshKeyRecord {
    SshKeyRecord {
        fingerprint: fingerprint.into(),
        user_id: user_id.into(),
        public_key: "ssh-ed25519 AAAA".into(),
        registered_at: 1,
        agent: false,
        label: None,
    }
}

fn signing_key(key_id: &str, owner: &str, byte: u8) -> SigningKeyRecord {
    SigningKeyRecord {
        key_id: key_id.into(),
        owner: owner.into(),
        token_object_id: "abcd".into(),
        public_key: crate::hex::encode(&[byte; 32]),
        created_at: i64::from(u8::MAX - byte),
        revoked_at: None,
    }
}

fn grant(id: &str, key_id: &str, grantee: &str) -> Authorization {
    Authorization {
        authorization_id: id.into(),
        key_id: key_id.into(),
        grantee: grantee.into(),
        principal: "usr_a".into(),
        terms: Terms {
            scopes: vec!["git".into()],
            tier: Tier::Autonomous,
            require_signature: false,
            constraints: serde_json::from_str(r#"{"cap": {"max": 123456789}}"#).unwrap(),
            hard_rules: Default::default(),
            soft_rules: Default::default(),
            expires_at: None,
        },
        created_at: 1,
        revoked_at: None,
    }
}

fn registration_is_idempotent_per_ssh_key(kind: Kind) {
    let (_place, store) = store(kind);
    let first = store
        .register(user("usr_a"), ssh_key("fp", "usr_a"))
        .unwrap();
    let second = store
        .register(user("usr_b"), ssh_key("fp", "usr_b"))
        .unwrap();
    assert_eq!(first, second);
    assert!(store.user("usr_b").unwrap().is_none());
}

fn keys_and_authorizations_are_indexed_in_creation_order(kind: Kind) {
    let (_place, store) = store(kind);
    store
        .insert_signing_key(
            &signing_key("ak_1", "usr_a", 1),
            &grant("az_1", "ak_1", "usr_a"),
        )
        .unwrap();
    store
        .insert_signing_key(
            &signing_key("ak_2", "usr_a", 2),
            &grant("az_2", "ak_2", "usr_b"),
        )
        .unwrap();
    store.create(&grant("az_3", "ak_1", "usr_b")).unwrap();
    let ids = |keys: Vec<SigningKeyRecord>| keys.into_iter().map(|k| k.key_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.signing_keys_of("usr_a").unwrap()),
        ["ak_1", "ak_2"]
    );
    assert_eq!(
        store
            .signing_key_by_public(&[2; 32])
            .unwrap()
            .unwrap()
            .key_id,
        "ak_2"
    );
    let az = |auths: Vec<AuthorizationRecord>| {
        auths
            .into_iter()
            .map(|a| a.authorization_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        az(store.authorizations_of_key("ak_1").unwrap()),
        ["az_1", "az_3"]
    );
    assert_eq!(
        az(store.authorizations_of_grantee("usr_b").unwrap()),
        ["az_2", "az_3"]
    );
    assert!(matches!(
        store.insert_signing_key(
            &signing_key("ak_1", "usr_b", 9),
            &grant("az_9", "ak_1", "usr_b")
        ),
        Err(Error::Exists { .. })
    ));
    assert!(
        store.authorization("az_9").unwrap().is_none(),
        "the failed insert wrote nothing"
    );
}

fn authorizations_are_sealed_and_bound_to_their_id(kind: Kind) {
    let (_place, store) = store(kind);
    store
        .insert_signing_key(
            &signing_key("ak_1", "usr_a", 1),
            &grant("az_1", "ak_1", "usr_a"),
        )
        .unwrap();
    store.create(&grant("az_2", "ak_1", "usr_a")).unwrap();
    let raw = store
        .engine
        .get(TreeName::Authorizations, b"az_1")
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        !text.contains("123456789") && !text.contains("git"),
        "{text}"
    );

    // Moved to another id: refused.
    store
        .engine
        .insert(TreeName::Authorizations, b"az_2", &raw)
        .unwrap();
    assert!(matches!(store.authorization("az_2"), Err(Error::Seal(_))));
    // A flipped byte in the sealed body: refused.
    let mut envelope: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let mut body = BASE64.decode(envelope["s"].as_str().unwrap()).unwrap();
    body[20] ^= 1;
    envelope["s"] = BASE64.encode(body).into();
    store
        .engine
        .insert(
            TreeName::Authorizations,
            b"az_1",
            &serde_json::to_vec(&envelope).unwrap(),
        )
        .unwrap();
    assert!(matches!(store.authorization("az_1"), Err(Error::Seal(_))));
}

fn sealed_records_need_the_data_key(kind: Kind) {
    let (_place, store) = unsealed(kind);
    assert!(matches!(
        store.create(&grant("az_1", "ak_1", "usr_a")),
        Err(Error::NotUnsealed)
    ));
}

fn revocation_happens_once_even_when_racing(kind: Kind) {
    let (_place, store) = store(kind);
    store
        .insert_signing_key(
            &signing_key("ak_1", "usr_a", 1),
            &grant("az_1", "ak_1", "usr_a"),
        )
        .unwrap();
    let winners: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                store
                    .revoke_authorization("az_1", i, || Error::Exists {
                        kind: "authorization",
                        key: "az_1".into(),
                    })
                    .is_ok()
            })
        })
        .collect();
    let won = winners
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|w| *w)
        .count();
    assert_eq!(won, 1);
    assert!(
        store
            .authorization("az_1")
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
}

fn unknown_versions_are_refused(kind: Kind) {
    let (_place, store) = store(kind);
    store
        .engine
        .insert(TreeName::Users, b"usr_x", br#"{"v":99,"r":{}}"#)
        .unwrap();
    assert!(matches!(
        store.user("usr_x"),
        Err(Error::Version { found: 99, .. })
    ));
}

fn the_data_key_is_written_once(kind: Kind) {
    let (_place, store) = store(kind);
    let key = WrappedDataKey {
        wrapped: "00".into(),
        check: "11".into(),
    };
    store.put_data_key(&key).unwrap();
    assert_eq!(store.data_key().unwrap(), Some(key.clone()));
    assert!(store.put_data_key(&key).is_err());
}

fn version_1_keys_migrate_to_keys_with_an_authorization(kind: Kind) {
    let (_place, store) = store(kind);
    let v1 = serde_json::json!({"v": 1, "r": {
        "key_id": "ak_old", "owner": "usr_a", "token_object_id": "ab", "public_key": "11".repeat(32),
        "scopes": ["git", "release"], "tier": "cosign", "require_signature": false,
        "constraints": {"amount": {"max": 10}}, "created_at": 5, "expires_at": null, "revoked_at": null,
    }});
    let broken = serde_json::json!({"v": 1, "r": {
        "key_id": "ak_broken", "owner": "usr_a", "token_object_id": "cd", "public_key": "22".repeat(32),
        "scopes": ["git"], "tier": "autonomous", "require_signature": false,
        "constraints": {"amount": {"max": 1, "min": 9}}, "created_at": 6, "expires_at": null, "revoked_at": null,
    }});
    for (id, record) in [("ak_old", &v1), ("ak_broken", &broken)] {
        store
            .engine
            .insert(
                TreeName::SigningKeys,
                id.as_bytes(),
                &serde_json::to_vec(record).unwrap(),
            )
            .unwrap();
    }

    let mut migrated = store.migrate_v1_keys(100).unwrap();
    migrated.sort();
    assert_eq!(migrated, ["ak_broken", "ak_old"]);
    assert!(
        store.migrate_v1_keys(100).unwrap().is_empty(),
        "migration runs once"
    );

    let key = store.signing_key("ak_old").unwrap().unwrap();
    assert_eq!(key.owner, "usr_a");
    let auths = store.authorizations_of_key("ak_old").unwrap();
    assert_eq!(auths.len(), 1);
    assert_eq!(auths[0].terms.scopes, ["git", "release"]);
    assert_eq!(auths[0].terms.tier, Tier::Cosign);
    assert_eq!(auths[0].terms.constraints.len(), 1);
    assert_eq!(auths[0].revoked_at, None);
    let broken = store.authorizations_of_key("ak_broken").unwrap();
    assert_eq!(
        broken[0].revoked_at,
        Some(100),
        "invalid terms are kept revoked, not dropped"
    );
}

fn api_key(id: &str, owner: &str, hash: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        owner: owner.into(),
        label: "ci".into(),
        scopes: vec![ApiScope::ApprovalCreate],
        prefix: "sshsign_abcd".into(),
        key_sha256: hash.into(),
        created_at: 1,
        last_used_at: None,
        revoked_at: None,
    }
}

fn a_record_and_its_index_entries_are_created_together_or_not_at_all(kind: Kind) {
    let (_place, store) = store(kind);
    store.create(&api_key("apk_1", "usr_a", "h1")).unwrap();
    store.create(&api_key("apk_2", "usr_a", "h2")).unwrap();
    // A taken key, or a taken unique index entry, refuses the whole record.
    let same_id = store.create(&api_key("apk_1", "usr_b", "h3"));
    assert!(matches!(same_id, Err(Error::Exists { .. })), "{same_id:?}");
    let same_hash = store.create(&api_key("apk_3", "usr_b", "h1"));
    assert!(
        matches!(same_hash, Err(Error::Exists { .. })),
        "{same_hash:?}"
    );
    assert!(store.api_key("apk_3").unwrap().is_none());
    assert!(store.api_keys_of("usr_b").unwrap().is_empty());
    // Listed in creation order; found by the unique entry.
    let ids: Vec<String> = store
        .api_keys_of("usr_a")
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, ["apk_1", "apk_2"]);
    assert_eq!(store.api_key_by_hash("h2").unwrap().unwrap().id, "apk_2");
    // A change is a compare-and-swap on the one record.
    let revoked = store
        .change::<ApiKeyRecord, Error>("apk_2", |mut k| {
            k.revoked_at = Some(5);
            Ok(k)
        })
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(5));
    assert_eq!(store.read::<ApiKeyRecord>("apk_2").unwrap(), Some(revoked));
}

on_both_engines!(
    registration_is_idempotent_per_ssh_key,
    keys_and_authorizations_are_indexed_in_creation_order,
    authorizations_are_sealed_and_bound_to_their_id,
    sealed_records_need_the_data_key,
    revocation_happens_once_even_when_racing,
    unknown_versions_are_refused,
    the_data_key_is_written_once,
    version_1_keys_migrate_to_keys_with_an_authorization,
    a_record_and_its_index_entries_are_created_together_or_not_at_all,
    a_due_delivery_is_claimed_once_and_falls_due_again_if_not_settled,
    a_lease_is_held_by_one_until_given_back_or_lapsed,
    a_carried_key_is_kept_under_its_object_and_checked_when_read,
);

fn a_carried_key_is_kept_under_its_object_and_checked_when_read(kind: Kind) {
    let (_place, store) = store(kind);
    let carried = crate::store::CarriedKey {
        object_id: "0a0b".into(),
        label: "ak_x".into(),
        public_key: "11".repeat(32),
        wrap_key: "ff".repeat(16),
        wrapped: "22".repeat(40),
    };
    assert_eq!(store.carried_key("0a0b").unwrap(), None);
    store.put_carried_key(&carried).unwrap();
    assert_eq!(store.carried_key("0a0b").unwrap(), Some(carried.clone()));
    // Filed under another object's id, it is refused rather than unwrapped there.
    store
        .engine
        .insert(
            TreeName::CarriedKeys,
            b"0c0d",
            &serde_json::to_vec(&carried).unwrap(),
        )
        .unwrap();
    assert!(matches!(
        store.carried_key("0c0d"),
        Err(crate::store::Error::Corrupt { .. })
    ));
    store.remove_carried_key("0a0b").unwrap();
    assert_eq!(store.carried_key("0a0b").unwrap(), None);
}

fn a_lease_is_held_by_one_until_given_back_or_lapsed(kind: Kind) {
    let (_place, store) = store(kind);
    let (a, b) = ([1u8; 16], [2u8; 16]);
    let held = store
        .take_lease("apr_1", &a, 1_000, 31_000)
        .unwrap()
        .unwrap();
    // Another holder waits; another record is free.
    assert_eq!(store.take_lease("apr_1", &b, 2_000, 32_000).unwrap(), None);
    assert!(
        store
            .take_lease("apr_2", &b, 2_000, 32_000)
            .unwrap()
            .is_some()
    );
    store.release_lease("apr_1", &held).unwrap();
    let by_b = store
        .take_lease("apr_1", &b, 3_000, 33_000)
        .unwrap()
        .unwrap();
    // Past its deadline a lease lapses to the next taker, and the lapsed holder's give-back
    // leaves the new one alone.
    let by_a = store
        .take_lease("apr_1", &a, 33_001, 63_001)
        .unwrap()
        .unwrap();
    store.release_lease("apr_1", &by_b).unwrap();
    assert_eq!(store.take_lease("apr_1", &b, 34_000, 64_000).unwrap(), None);
    store.release_lease("apr_1", &by_a).unwrap();
    assert!(
        store
            .take_lease("apr_1", &b, 34_000, 64_000)
            .unwrap()
            .is_some()
    );
}

fn delivery(id: &str, due: i64) -> Delivery {
    Delivery {
        id: id.into(),
        kind: DeliveryKind::Notification,
        url: "https://hooks.example/x".into(),
        body: "{}".into(),
        request_id: "apr_1".into(),
        readers: vec!["usr_a".into()],
        created_at: due,
        attempts: 0,
        next_attempt_at: due,
        state: DeliveryState::Pending,
        last_result: None,
        finished_at: None,
    }
}

fn a_due_delivery_is_claimed_once_and_falls_due_again_if_not_settled(kind: Kind) {
    let (_place, store) = store(kind);
    store.create(&delivery("msg_1", 100)).unwrap();
    store.create(&delivery("msg_2", 500)).unwrap();
    let due = store.due_deliveries(200, 10).unwrap();
    assert_eq!(due.len(), 1);
    // Four appliances (store handles) claim it at once: one gets it.
    let claims: Vec<_> = (0..4)
        .map(|_| {
            let (store, due) = (store.clone(), due[0].clone());
            std::thread::spawn(move || store.claim_delivery(&due, 260).unwrap())
        })
        .collect();
    let won: Vec<Delivery> = claims
        .into_iter()
        .filter_map(|claim| claim.join().unwrap())
        .collect();
    assert_eq!(won.len(), 1);
    assert_eq!(won[0].next_attempt_at, 260);
    // Claimed: not due until the claim runs out; then due again, for anyone to retry.
    assert!(store.due_deliveries(259, 10).unwrap().is_empty());
    assert!(store.claim_delivery(&due[0], 999).unwrap().is_none());
    let again = store.due_deliveries(260, 10).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, "msg_1");
    // Settled by whoever holds it: out of the schedule.
    let mut done = again[0].clone();
    done.state = DeliveryState::Delivered;
    store.update_delivery(&again[0], &done).unwrap();
    assert!(
        store
            .due_deliveries(1000, 10)
            .unwrap()
            .iter()
            .all(|d| d.id != "msg_1")
    );
    assert!(store.claim_delivery(&again[0], 2000).unwrap().is_none());
}

/// What only the PostgreSQL engine has: a schema of its own, several appliances on one
/// database, TLS, a server that goes away.
mod on_postgres_only {
    use super::*;

    fn settings(url: String) -> postgres::Settings {
        postgres::Settings {
            url: url.into(),
            password: None,
            ca_file: None,
            pool: 4,
        }
    }

    fn sealed(store: Store) -> Store {
        let key = [9u8; 32];
        store.unseal_with(Sealer::new(&key, &crate::seal::check_value(&key)).unwrap());
        store
    }

    fn failure(outcome: Result<Store>) -> String {
        match outcome {
            Ok(_) => panic!("the store opened"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn migrations_run_once_when_appliances_start_together() {
        let cluster = Cluster::start().unwrap();
        let url = cluster.create_database("sshsign").unwrap();
        let opened: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || Store::open_postgres(&settings(url)))
            })
            .collect();
        for store in opened {
            let store = store.join().unwrap().unwrap();
            let Engine::Postgres(pg) = store.engine() else {
                panic!("not on PostgreSQL")
            };
            assert_eq!(pg.schema_version().unwrap(), 2);
        }
        let applied = cluster
            .psql(
                "sshsign",
                "SELECT string_agg(version::text, ',' ORDER BY version) FROM sshsign_migrations",
            )
            .unwrap();
        assert_eq!(applied.trim(), "1,2");

        // A database a newer build migrated is refused, and left as it is.
        cluster
            .psql(
                "sshsign",
                "INSERT INTO sshsign_migrations (version, description) VALUES (3, 'later')",
            )
            .unwrap();
        let refused = failure(Store::open_postgres(&settings(url)));
        assert!(refused.contains("schema is at version 3"), "{refused}");
    }

    #[test]
    fn two_appliances_share_records_and_resolve_a_change_once() {
        let cluster = Cluster::start().unwrap();
        let url = cluster.create_database("sshsign").unwrap();
        let a = sealed(Store::open_postgres(&settings(url.clone())).unwrap());
        let b = sealed(Store::open_postgres(&settings(url)).unwrap());
        a.insert_signing_key(
            &signing_key("ak_1", "usr_a", 1),
            &grant("az_1", "ak_1", "usr_a"),
        )
        .unwrap();
        // Made alternately on each appliance, listed in creation order on both.
        for (i, store) in [&b, &a, &b].into_iter().enumerate() {
            store
                .create(&grant(&format!("az_{}", i + 2), "ak_1", "usr_b"))
                .unwrap();
        }
        for store in [&a, &b] {
            let ids: Vec<String> = store
                .authorizations_of_key("ak_1")
                .unwrap()
                .into_iter()
                .map(|g| g.authorization_id)
                .collect();
            assert_eq!(ids, ["az_1", "az_2", "az_3", "az_4"]);
        }
        // Eight revocations at once, half through each appliance: one wins.
        let won = (0..8)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                std::thread::spawn(move || {
                    store
                        .revoke_authorization("az_3", i, || Error::Exists {
                            kind: "authorization",
                            key: "az_3".into(),
                        })
                        .is_ok()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|racer| racer.join().unwrap())
            .filter(|won| *won)
            .count();
        assert_eq!(won, 1);
        // Registration racing on two appliances ends with one user.
        let racers: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                std::thread::spawn(move || {
                    let id = format!("usr_{i}");
                    store
                        .register(user(&id), ssh_key("SHA256:same", &id))
                        .unwrap()
                })
            })
            .collect();
        let users: Vec<UserRecord> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        assert_eq!(users[0], users[1]);
        assert_eq!(a.count_users().unwrap(), 1);
    }

    #[test]
    fn a_database_on_another_machine_needs_tls() {
        for url in [
            "host=db.example.com user=sshsign dbname=sshsign",
            "postgres://sshsign@192.0.2.7/sshsign?sslmode=prefer",
            "postgres://sshsign@db.example.com/sshsign?sslmode=disable",
        ] {
            let refused = failure(Store::open_postgres(&settings(url.into())));
            assert!(refused.contains("over TLS"), "{url}: {refused}");
        }
        let garbled = failure(Store::open_postgres(&settings("postgres://[".into())));
        assert!(garbled.contains("does not parse"), "{garbled}");
    }

    #[test]
    fn tls_to_the_database_checks_its_certificate() {
        // A CA of the test's own, and the server's certificate for localhost from it.
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let openssl = |args: &str| {
            let made = std::process::Command::new("openssl")
                .current_dir(dir.path())
                .args(args.split_whitespace())
                .output()
                .unwrap();
            assert!(
                made.status.success(),
                "{}",
                String::from_utf8_lossy(&made.stderr)
            );
        };
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        openssl(&format!(
            "req -x509 -days 1 -subj /CN=sshsign-test-CA {ec} -keyout ca.key -out ca.pem"
        ));
        openssl(&format!(
            "req -subj /CN=localhost {ec} -keyout key.pem -out server.csr"
        ));
        std::fs::write(path("ext"), "subjectAltName=DNS:localhost\n").unwrap();
        openssl(
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
             -extfile ext -out cert.pem",
        );
        let (cert, key, ca) = (path("cert.pem"), path("key.pem"), path("ca.pem"));
        let cluster = Cluster::start_tcp(Some(crate::pgcluster::TlsFiles {
            certificate: &cert,
            key: &key,
        }))
        .unwrap();
        cluster.create_database("sshsign").unwrap();
        let url = |mode: &str| {
            format!(
                "host=localhost port={} user=postgres dbname=sshsign sslmode={mode}",
                cluster.port()
            )
        };

        // A certificate nobody vouched for is refused.
        let unknown = failure(Store::open_postgres(&settings(url("require"))));
        assert!(unknown.contains("certificate"), "{unknown}");

        // With its issuer trusted, the connection is made, over TLS.
        let store = Store::open_postgres(&postgres::Settings {
            ca_file: Some(ca),
            ..settings(url("verify-full"))
        })
        .unwrap();
        assert_eq!(store.count_users().unwrap(), 0);
        let over_tls = cluster
            .psql(
                "sshsign",
                "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
                 WHERE ssl AND application_name = 'sshsign'",
            )
            .unwrap();
        assert_eq!(over_tls.trim(), "1");

        // A CA file that holds no certificate is an error, not an empty trust list.
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let refused = failure(Store::open_postgres(&postgres::Settings {
            ca_file: Some(empty),
            ..settings(url("require"))
        }));
        assert!(refused.contains("no PEM certificate"), "{refused}");
    }

    #[test]
    fn the_store_fails_closed_while_the_database_is_down_and_recovers() {
        let mut cluster = Cluster::start().unwrap();
        let url = cluster.create_database("sshsign").unwrap();
        let store = sealed(Store::open_postgres(&settings(url)).unwrap());
        store
            .register(user("usr_a"), ssh_key("SHA256:a", "usr_a"))
            .unwrap();
        cluster.kill().unwrap();
        assert!(store.user("usr_a").is_err(), "no answer without a database");
        assert!(
            store
                .register(user("usr_b"), ssh_key("SHA256:b", "usr_b"))
                .is_err()
        );
        cluster.start_again().unwrap();
        // Broken connections are dropped from the pool and new ones made.
        assert_eq!(store.user("usr_a").unwrap().unwrap().user_id, "usr_a");
        assert!(
            store.user("usr_b").unwrap().is_none(),
            "nothing half-written"
        );
        store
            .register(user("usr_b"), ssh_key("SHA256:b", "usr_b"))
            .unwrap();
        assert_eq!(store.count_users().unwrap(), 2);
    }
}
