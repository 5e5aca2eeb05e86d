//! The log without a token: proof vectors, the group-committing writer, tampering. Checkpoint
//! signing and a failing write are tested with a real token in `tests/it/audit.rs`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use super::log::{LogTree, Sink, Writer};
use super::merkle::{self, Frontier};
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

fn open_tree() -> (tempfile::TempDir, LogTree) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    (dir, LogTree::open(&db).unwrap())
}

fn writer(sink: Arc<dyn Sink>, tree: &LogTree, head: &Arc<RwLock<Head>>) -> Writer {
    let reload_from = tree.clone();
    let frontier = Frontier::load(tree, tree.size().unwrap()).unwrap();
    Writer::start(
        sink,
        Arc::new(move || Frontier::load(&reload_from, reload_from.size()?)),
        frontier,
        Arc::clone(head),
    )
    .unwrap()
}

fn no_checkpoints(tree: &LogTree) -> sled::Tree {
    tree.db.open_tree("audit_checkpoints").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_distinct_indexes_and_a_verifiable_tree() {
    let (_dir, tree) = open_tree();
    let head = Arc::new(RwLock::new(Head {
        size: 0,
        root: merkle::empty_root(),
    }));
    let writer = writer(Arc::new(tree.clone()), &tree, &head);
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

    let frontier = verify_stored(&tree, &no_checkpoints(&tree), "unused").unwrap();
    assert_eq!(frontier.size(), 400);
    assert_eq!(head.read().unwrap().root, frontier.root());
    // Every stored entry's inclusion proof checks against the head.
    let root = frontier.root();
    for index in [0, 1, 199, 399] {
        let path: Vec<Vec<u8>> = merkle::inclusion_proof(&tree, index, 400)
            .unwrap()
            .iter()
            .map(|h| h.to_vec())
            .collect();
        let leaf = merkle::leaf_hash(&tree.entry(index).unwrap().unwrap());
        merkle::verify_inclusion(index, 400, &leaf, &path, &root).unwrap();
    }
}

#[tokio::test]
async fn edited_and_deleted_entries_are_caught() {
    let (_dir, tree) = open_tree();
    let head = Arc::new(RwLock::new(Head {
        size: 0,
        root: merkle::empty_root(),
    }));
    let writer = writer(Arc::new(tree.clone()), &tree, &head);
    for n in 0..10 {
        writer.append(entry(n)).await.unwrap();
    }
    let checkpoints = no_checkpoints(&tree);
    verify_stored(&tree, &checkpoints, "unused").unwrap();

    let mut key = [b'e'; 9];
    key[1..].copy_from_slice(&4u64.to_be_bytes());
    let original = tree.tree.get(key).unwrap().unwrap();
    tree.tree.insert(key, entry(99)).unwrap();
    assert!(matches!(
        verify_stored(&tree, &checkpoints, "unused"),
        Err(Error::Tampered(_))
    ));
    tree.tree.remove(key).unwrap();
    assert!(matches!(
        verify_stored(&tree, &checkpoints, "unused"),
        Err(Error::Tampered(_))
    ));
    tree.tree.insert(key, original).unwrap();
    verify_stored(&tree, &checkpoints, "unused").unwrap();
}
