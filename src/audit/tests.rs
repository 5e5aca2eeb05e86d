//! The log without a token: proof vectors, the group-committing writer, tampering. Checkpoint
//! signing and a failing write are tested with a real token in `tests/it/audit.rs`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use super::log::{Sink, Writer};
use super::merkle;
use super::*;

/// Every vector file under `tests/vectors/rfc6962/KIND`, however deep.
fn vectors(kind: &str) -> Vec<(PathBuf, Value)> {
    fn walk(dir: &Path, found: &mut Vec<(PathBuf, Value)>) {
        for item in std::fs::read_dir(dir).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                found.push((path, serde_json::from_str(&text).unwrap()));
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors/rfc6962")
            .join(kind),
        &mut found,
    );
    assert!(found.len() > 20, "{kind}: {}", found.len());
    found
}

fn bytes(value: &Value) -> Vec<u8> {
    BASE64
        .decode(value.as_str().unwrap_or(""))
        .unwrap_or_default()
}

fn proof(value: &Value) -> Vec<Vec<u8>> {
    value
        .as_array()
        .map(|items| items.iter().map(bytes).collect())
        .unwrap_or_default()
}

#[test]
fn rfc6962_inclusion_vectors() {
    for (file, v) in vectors("inclusion") {
        let verdict = merkle::verify_inclusion(
            v["leafIdx"].as_u64().unwrap(),
            v["treeSize"].as_u64().unwrap(),
            &bytes(&v["leafHash"]),
            &proof(&v["proof"]),
            &bytes(&v["root"]),
        );
        assert_eq!(
            verdict.is_err(),
            v["wantErr"].as_bool().unwrap(),
            "{}",
            file.display()
        );
    }
}

#[test]
fn rfc6962_consistency_vectors() {
    for (file, v) in vectors("consistency") {
        let verdict = merkle::verify_consistency(
            v["size1"].as_u64().unwrap(),
            v["size2"].as_u64().unwrap(),
            &proof(&v["proof"]),
            &bytes(&v["root1"]),
            &bytes(&v["root2"]),
        );
        assert_eq!(
            verdict.is_err(),
            v["wantErr"].as_bool().unwrap(),
            "{}",
            file.display()
        );
    }
}

fn entry(n: u64) -> Vec<u8> {
    AuditEntry {
        time: n as i64,
        action: Action::Sign,
        result: Outcome::Signed,
        actor: format!("usr_{n}"),
        ..Default::default()
    }
    .to_bytes()
    .unwrap()
}

fn open_tiles() -> (tempfile::TempDir, Arc<TileStore>, LogStore) {
    let dir = tempfile::tempdir().unwrap();
    let tiles = Arc::new(TileStore::open(dir.path(), 1 << 20).unwrap());
    let store = LogStore::files(dir.path(), Arc::clone(&tiles)).unwrap();
    (dir, tiles, store)
}

/// The log's files under `dir`, opened again.
fn reopen(dir: &Path) -> LogStore {
    LogStore::files(dir, Arc::new(TileStore::open(dir, 0).unwrap())).unwrap()
}

fn writer(tiles: &Arc<TileStore>) -> Writer {
    Writer::start(Arc::clone(tiles) as Arc<dyn Sink>).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_distinct_indexes_and_a_verifiable_tree() {
    let (_dir, tiles, store) = open_tiles();
    let writer = writer(&tiles);
    let tasks: Vec<_> = (0..400)
        .map(|n| {
            let writer = writer.clone();
            tokio::spawn(async move { writer.append(entry(n)).await.unwrap() })
        })
        .collect();
    let mut indexes = Vec::new();
    for task in tasks {
        indexes.push(task.await.unwrap());
    }
    indexes.sort_unstable();
    assert_eq!(indexes, (0..400).collect::<Vec<_>>());

    let mut seen = Vec::new();
    let frontier = verify_full(&store, &[], |n| seen.push(n)).unwrap();
    assert_eq!(frontier.size(), 400);
    assert_eq!(seen.last(), Some(&400), "progress reaches the end");
    assert_eq!(tiles.head().root, frontier.root());
    // Every stored entry's inclusion proof checks against the head.
    let root = frontier.root();
    for index in [0, 1, 199, 399] {
        let path: Vec<Vec<u8>> = merkle::inclusion_proof(&*tiles, index, 400)
            .unwrap()
            .iter()
            .map(|h| h.to_vec())
            .collect();
        let leaf = merkle::leaf_hash(&tiles.entry(index).unwrap().unwrap());
        merkle::verify_inclusion(index, 400, &leaf, &path, &root).unwrap();
    }
}

#[tokio::test]
async fn edited_entries_and_tiles_are_caught_by_the_full_check() {
    let (dir, tiles, store) = open_tiles();
    let writer = writer(&tiles);
    for n in 0..300 {
        writer.append(entry(n)).await.unwrap();
    }
    verify_full(&store, &[], |_| {}).unwrap();
    tiles.sync_now().unwrap();
    writer.stop();
    drop((tiles, store));

    // An entry edited in place in a full bundle, its length kept.
    let bundle = dir.path().join("tile/entries/000");
    let original = std::fs::read(&bundle).unwrap();
    let mut edited = original.clone();
    let at = edited.len() / 2;
    edited[at] = edited[at].wrapping_add(1);
    std::fs::write(&bundle, &edited).unwrap();
    let store = reopen(dir.path());
    assert!(matches!(
        verify_full(&store, &[], |_| {}),
        Err(Error::Tampered(_))
    ));
    std::fs::write(&bundle, &original).unwrap();
    verify_full(&store, &[], |_| {}).unwrap();
    drop(store);

    // A hash edited in a full tile that no proof near the edge reads.
    let tile = dir.path().join("tile/0/000");
    let mut edited = std::fs::read(&tile).unwrap();
    edited[64] ^= 0x80;
    std::fs::write(&tile, &edited).unwrap();
    let store = reopen(dir.path());
    assert!(matches!(
        verify_full(&store, &[], |_| {}),
        Err(Error::Tampered(_))
    ));
}

#[test]
fn the_full_check_covers_the_log_as_it_began_while_appends_go_on() {
    let (_dir, tiles, store) = open_tiles();
    let entries: Vec<Vec<u8>> = (0..600).map(entry).collect();
    tiles.append(0, &entries).unwrap();
    // Each time the check reports progress, more entries arrive.
    let mut next = 600;
    let frontier = verify_full(&store, &[], |_| {
        let more: Vec<Vec<u8>> = (next..next + 100).map(entry).collect();
        tiles.append(next, &more).unwrap();
        next += 100;
    })
    .unwrap();
    assert_eq!(frontier.size(), 600);
    assert!(tiles.head().size > 600, "appends went on during the check");
}
