//! The shared log on a real PostgreSQL (a throwaway cluster per test): two appliances appending
//! at once get one tree, the tree a single appliance's files would hold; a database sent back
//! in time is refused by the appliance that saw it ahead.

use std::sync::Arc;

use ed25519_dalek::{Signer as _, SigningKey};

use super::SharedLog;
use crate::audit::log::{Sink, Writer};
use crate::audit::merkle::{self, Nodes as _};
use crate::audit::note::{self, Checkpoint};
use crate::audit::storage::LogStore;
use crate::audit::tiles::{Tile, TileStore};
use crate::audit::{Error, check_against_checkpoint, verify_full};
use crate::pgcluster::Cluster;
use crate::store::postgres::{Postgres, Settings};

fn database(url: &str) -> Postgres {
    Postgres::open(&Settings {
        url: url.to_owned().into(),
        password: None,
        ca_file: None,
        pool: 4,
    })
    .unwrap()
}

fn entry(n: u64) -> Vec<u8> {
    format!(
        "{{\"n\":{n},\"pad\":\"{}\"}}",
        "x".repeat((n % 40) as usize)
    )
    .into_bytes()
}

/// A checkpoint key of the test's own, and a note it signs over `log`'s current tree.
struct Key(SigningKey);

impl Key {
    fn vkey(&self) -> String {
        note::verifier_key("test-log", &self.0.verifying_key().to_bytes())
    }

    fn sign(&self, store: &LogStore) -> (u64, String) {
        let head = store.refresh().unwrap();
        let body = Checkpoint {
            origin: "test-log".into(),
            size: head.size,
            root: head.root,
        }
        .body();
        let signature = self.0.sign(body.as_bytes()).to_bytes();
        let note = note::signed_note(
            &body,
            "test-log",
            &self.0.verifying_key().to_bytes(),
            &signature,
        );
        (head.size, note)
    }
}

struct Appliance {
    store: Arc<LogStore>,
    writer: Writer,
    _local: tempfile::TempDir,
}

fn appliance(url: &str) -> Appliance {
    let local = tempfile::tempdir().unwrap();
    let log = Arc::new(SharedLog::open(database(url), Some(local.path()), 1 << 20).unwrap());
    let writer = Writer::start(Arc::clone(&log) as Arc<dyn Sink>).unwrap();
    Appliance {
        store: Arc::new(LogStore::Shared(log)),
        writer,
        _local: local,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_appliances_appending_at_once_make_one_tree() {
    let cluster = Cluster::start().unwrap();
    let url = cluster.create_database("sshsign").unwrap();
    let (a, b) = (appliance(&url), appliance(&url));
    // 300 entries through each, all in flight together.
    let tasks: Vec<_> = (0..600u64)
        .map(|n| {
            let writer = if n % 2 == 0 { &a.writer } else { &b.writer }.clone();
            tokio::spawn(async move { (n, writer.append(entry(n)).await.unwrap()) })
        })
        .collect();
    let mut placed = vec![None; 600];
    for task in tasks {
        let (n, index) = task.await.unwrap();
        assert!(
            placed[index as usize].is_none(),
            "index {index} given twice"
        );
        placed[index as usize] = Some(n);
    }
    let order: Vec<u64> = placed.into_iter().map(Option::unwrap).collect();

    // Both see the same head, and it is the tree one appliance's files would hold for the
    // entries in the order the sequencer gave them.
    let (head_a, head_b) = (a.store.refresh().unwrap(), b.store.refresh().unwrap());
    assert_eq!(head_a, head_b);
    assert_eq!(head_a.size, 600);
    let dir = tempfile::tempdir().unwrap();
    let reference = TileStore::open(dir.path(), 1 << 20).unwrap();
    let in_order: Vec<Vec<u8>> = order.iter().map(|&n| entry(n)).collect();
    reference.append(0, &in_order).unwrap();
    assert_eq!(reference.head(), head_a);
    for tile in [
        Tile::Hashes {
            level: 0,
            index: 0,
            width: 256,
        },
        Tile::Hashes {
            level: 0,
            index: 2,
            width: 88,
        },
        Tile::Hashes {
            level: 1,
            index: 0,
            width: 2,
        },
        Tile::Entries {
            index: 1,
            width: 256,
        },
        Tile::Entries { index: 2, width: 7 },
    ] {
        let expected = reference.read(tile).unwrap().unwrap();
        assert_eq!(a.store.read(tile).unwrap().unwrap(), expected, "{tile:?}");
        assert_eq!(b.store.read(tile).unwrap().unwrap(), expected, "{tile:?}");
    }
    // Past the head: nothing.
    let past = Tile::Hashes {
        level: 0,
        index: 2,
        width: 89,
    };
    assert!(a.store.read(past).unwrap().is_none());
    assert_eq!(a.store.entry(599).unwrap(), Some(entry(order[599])));
    assert_eq!(a.store.entry(600).unwrap(), None);

    // Every entry checks against the tiles from either side; proofs from one verify against
    // the other's root.
    verify_full(&a.store, &[], |_| {}).unwrap();
    verify_full(&b.store, &[], |_| {}).unwrap();
    for index in [0, 255, 256, 599] {
        let proof: Vec<Vec<u8>> = merkle::inclusion_proof(&*a.store, index, 600)
            .unwrap()
            .iter()
            .map(|h| h.to_vec())
            .collect();
        let leaf = merkle::leaf_hash(&b.store.entry(index).unwrap().unwrap());
        merkle::verify_inclusion(index, 600, &leaf, &proof, &head_b.root).unwrap();
    }
    assert_eq!(
        a.store.node(8, 1).unwrap(),
        reference.node(8, 1).unwrap(),
        "a full tile's subtree"
    );

    // An entry deleted behind the appliances' backs: a reader without it cached finds the gap.
    cluster
        .psql(
            "sshsign",
            "DELETE FROM sshsign_audit_entries WHERE index = 300",
        )
        .unwrap();
    let c = appliance(&url);
    match verify_full(&c.store, &[], |_| {}) {
        Err(Error::Tampered(why)) => assert!(why.contains("entry 300 is missing"), "{why}"),
        other => panic!("a deleted entry went unnoticed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_sent_back_in_time_is_refused_by_an_appliance_that_saw_it_ahead() {
    let cluster = Cluster::start().unwrap();
    let url = cluster.create_database("sshsign").unwrap();
    let key = Key(SigningKey::from_bytes(&[7; 32]));
    let vkeys = [key.vkey()];
    let a = appliance(&url);
    // Past one full tile, which a running appliance caches.
    for n in 0..300 {
        a.writer.append(entry(n)).await.unwrap();
    }
    let (size, note) = key.sign(&a.store);
    assert_eq!(a.store.keep_checkpoint(size, &note).unwrap(), note);
    assert_eq!(a.store.witnessed().unwrap(), Some((300, note.clone())));
    // Another appliance keeping the same size keeps one note.
    let b = appliance(&url);
    assert_eq!(b.store.keep_checkpoint(size, &note).unwrap(), note);
    check_against_checkpoint(&a.store, &vkeys).unwrap();
    // a serves a proof: the full tile of the first 256 entries is in its cache now.
    crate::audit::merkle::inclusion_proof(&*a.store, 3, 300).unwrap();

    // The database restored from a backup taken when the log was empty.
    let empty = "UPDATE sshsign_audit_head SET size = 0, root = sha256(''::bytea); \
                 DELETE FROM sshsign_audit_entries; DELETE FROM sshsign_audit_tiles; \
                 DELETE FROM sshsign_audit_checkpoints;";
    cluster.psql("sshsign", empty).unwrap();
    match a.store.refresh() {
        Err(Error::Tampered(why)) => assert!(why.contains("saw 300"), "{why}"),
        other => panic!("a smaller head was taken: {other:?}"),
    }
    // An appliance that never saw the log takes the database as it is; one that did refuses
    // it at start-up, from the checkpoint on its own disk.
    let fresh = appliance(&url);
    check_against_checkpoint(&fresh.store, &vkeys).unwrap();
    let local = a._local.path().to_owned();
    let reopened = LogStore::Shared(Arc::new(
        SharedLog::open(database(&url), Some(&local), 1 << 20).unwrap(),
    ));
    match check_against_checkpoint(&reopened, &vkeys) {
        Err(Error::Tampered(why)) => assert!(why.contains("older state"), "{why}"),
        other => panic!("a rolled-back database was taken: {other:?}"),
    }

    // Rewritten instead: as many entries and more, but other ones. Still refused.
    // Only the first full tile's entries differ, the very ones a's cache holds.
    for n in (1000..1256).chain(256..320) {
        fresh.writer.append(entry(n)).await.unwrap();
    }
    match check_against_checkpoint(&reopened, &vkeys) {
        Err(Error::Tampered(why)) => assert!(why.contains("does not hash"), "{why}"),
        other => panic!("a rewritten log was taken: {other:?}"),
    }
    // Also by a, still running, whose cache holds the tiles as they were: the witness reads
    // the database itself.
    match check_against_checkpoint(&a.store, &vkeys) {
        Err(Error::Tampered(why)) => assert!(why.contains("does not hash"), "{why}"),
        other => panic!("a rewritten log was taken from the cache: {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_commit_answers_no_index_and_loses_nothing_committed() {
    let mut cluster = Cluster::start().unwrap();
    let url = cluster.create_database("sshsign").unwrap();
    let a = appliance(&url);
    for n in 0..5 {
        a.writer.append(entry(n)).await.unwrap();
    }
    cluster.kill().unwrap();
    let refused = a.writer.append(entry(5)).await;
    assert!(matches!(refused, Err(Error::Unavailable(_))), "{refused:?}");
    cluster.start_again().unwrap();
    // The pool reconnects; the next entry follows the five.
    let mut index = None;
    for _ in 0..50 {
        match a.writer.append(entry(6)).await {
            Ok(i) => {
                index = Some(i);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert_eq!(index, Some(5));
    verify_full(&a.store, &[], |_| {}).unwrap();
}

#[tokio::test]
async fn a_right_edge_edited_in_the_database_stops_appends_as_tampered() {
    let cluster = Cluster::start().unwrap();
    let url = cluster.create_database("sshsign").unwrap();
    let a = appliance(&url);
    for n in 0..10 {
        a.writer.append(entry(n)).await.unwrap();
    }
    assert_eq!(a.store.tampered(), None);
    // One hash of the level-0 tile that the next batch extends, changed in place.
    cluster
        .psql(
            "sshsign",
            "UPDATE sshsign_audit_tiles SET hashes = overlay(hashes placing '\\xff'::bytea \
             from 33 for 1) WHERE level = 0 AND index = 0",
        )
        .unwrap();
    let refused = a.writer.append(entry(10)).await;
    assert!(refused.is_err(), "{refused:?}");
    let problem = a.store.tampered().expect("the mismatch is kept");
    assert!(
        problem.contains("does not hash to the head at size 10"),
        "{problem}"
    );
    // Nothing was integrated: the head is where it was.
    assert_eq!(a.store.refresh().unwrap().size, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_head_while_appending_is_never_taken_for_a_rollback() {
    let cluster = Cluster::start().unwrap();
    let url = cluster.create_database("sshsign").unwrap();
    let a = Arc::new(appliance(&url));
    let b = appliance(&url);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // a reads the head over and over (as its checkpoints and proofs do) while its own writer
    // and another appliance's commit batches: a read may begin before a commit and end after.
    let reader = {
        let (a, stop) = (Arc::clone(&a), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                a.store.refresh().unwrap();
                reads += 1;
            }
            reads
        })
    };
    let b = Arc::new(b);
    let mut appenders = tokio::task::JoinSet::new();
    for lane in 0..8u64 {
        let appliance = Arc::clone(if lane % 2 == 0 { &a } else { &b });
        appenders.spawn(async move {
            for n in 0..100 {
                appliance
                    .writer
                    .append(entry(lane * 1000 + n))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = appenders.join_next().await {
        done.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 10, "{reads}");
    assert_eq!(a.store.refresh().unwrap().size, 800);
    assert_eq!(a.store.tampered(), None);
}
