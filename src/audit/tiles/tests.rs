//! The tiles against the definition: RFC 6962 roots and proofs computed from the leaves, the
//! specification's paths and widths, and what a crash or a failed write leaves behind.

use super::*;
use crate::audit::merkle::{
    consistency_proof, inclusion_proof, verify_consistency, verify_inclusion,
};

fn entry(n: u64) -> Vec<u8> {
    format!("entry {n}").into_bytes()
}

/// The tree of entries `0..size`, by the definition.
fn reference(size: u64) -> Frontier {
    let mut frontier = Frontier::default();
    for n in 0..size {
        frontier.push(merkle::leaf_hash(&entry(n)), |_, _, _| {});
    }
    frontier
}

/// Appends entries `from..to` in batches of `batch`.
fn fill(store: &TileStore, from: u64, to: u64, batch: u64) {
    let mut next = from;
    while next < to {
        let end = (next + batch).min(to);
        let entries: Vec<Vec<u8>> = (next..end).map(entry).collect();
        let head = store.append(next, &entries).unwrap();
        assert_eq!(head.size, end);
        next = end;
    }
}

fn exists(root: &Path, path: &str) -> bool {
    root.join(path).is_file()
}

#[test]
fn appends_write_the_specifications_tiles_and_prove_against_the_definition() {
    let dir = tempfile::tempdir().unwrap();
    let store = TileStore::open(dir.path(), 1 << 20).unwrap();
    // Batches that end inside tiles, on tile edges, and across several tiles at once.
    fill(&store, 0, 1000, 37);
    fill(&store, 1000, 1024, 24);
    fill(&store, 1024, 66_000, 4096);
    let size = 66_000;
    store.sync_now().unwrap();
    let expected = reference(size);
    assert_eq!(store.head().root, expected.root());
    assert_eq!(store.head().size, size);

    // 66,000 leaves: 257 full level-0 tiles and a partial of 208; level 1 holds 257 hashes,
    // one full tile and a partial of 1; level 2 holds 1 hash, a partial tile of 1.
    let root = dir.path();
    for path in [
        "tile/0/000",
        "tile/0/256",
        "tile/0/257.p/208",
        "tile/1/000",
        "tile/1/001.p/1",
        "tile/entries/000",
        "tile/entries/257.p/208",
        "head",
    ] {
        assert!(exists(root, path), "{path}");
    }
    // Outgrown partial widths go once their tile is full.
    assert!(!root.join("tile/0/000.p").exists());
    assert!(!exists(root, "tile/0/257"));
    assert!(
        exists(root, "tile/2/000.p/1"),
        "level 2 holds the first 65,536 leaves' root"
    );
    assert!(!root.join("tile/3").exists());

    // Every node any proof needs is the definition's.
    let tree_root = expected.root();
    for index in [0, 1, 255, 256, 4095, 65_535, 65_536, 65_999] {
        let proof: Vec<Vec<u8>> = inclusion_proof(&store, index, size)
            .unwrap()
            .iter()
            .map(|h| h.to_vec())
            .collect();
        let leaf = merkle::leaf_hash(&store.entry(index).unwrap().unwrap());
        verify_inclusion(index, size, &leaf, &proof, &tree_root).unwrap();
    }
    for old in [1, 256, 1000, 65_536, 65_999] {
        let proof: Vec<Vec<u8>> = consistency_proof(&store, old, size)
            .unwrap()
            .iter()
            .map(|h| h.to_vec())
            .collect();
        verify_consistency(old, size, &proof, &reference(old).root(), &tree_root).unwrap();
    }
    assert_eq!(store.entry(size).unwrap(), None);
    let page = store.entries(250, 10).unwrap();
    assert_eq!(
        page.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (250..260).collect::<Vec<_>>()
    );
    assert_eq!(page[9].1, entry(259));

    // Served tiles: a partial width the tile outgrew is the full tile's prefix.
    let first_five = store
        .read(Tile::Hashes {
            level: 0,
            index: 0,
            width: 5,
        })
        .unwrap()
        .unwrap();
    let full = store
        .read(Tile::Hashes {
            level: 0,
            index: 0,
            width: WIDTH,
        })
        .unwrap()
        .unwrap();
    assert_eq!(first_five[..], full[..5 * 32]);
    let bundle = store
        .read(Tile::Entries { index: 3, width: 2 })
        .unwrap()
        .unwrap();
    let entries = bundle_entries(&bundle).unwrap();
    assert_eq!(entries, [&entry(768)[..], &entry(769)[..]]);
    // Nothing past the head is served.
    for tile in [
        Tile::Hashes {
            level: 0,
            index: 257,
            width: 209,
        },
        Tile::Hashes {
            level: 0,
            index: 258,
            width: 1,
        },
        Tile::Entries {
            index: 257,
            width: WIDTH,
        },
    ] {
        assert_eq!(store.read(tile).unwrap(), None, "{}", tile.path());
    }

    // Reopened, it reads its edge back and goes on where it stood.
    drop(store);
    let store = TileStore::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(store.head().root, expected.root());
    fill(&store, size, size + 300, 100);
    assert_eq!(store.head().root, reference(size + 300).root());
    let (used, budget) = store.cache_use();
    assert!(used <= budget, "{used} > {budget}");
}

#[test]
fn files_a_crash_left_past_the_head_are_discarded_and_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = TileStore::open(root, 1 << 20).unwrap();
    fill(&store, 0, 300, 300);
    store.sync_now().unwrap();
    drop(store);
    // A commit of more entries got as far as some of its files, not the head.
    let garbage = [
        "tile/0/001.p/60",
        "tile/0/001",
        "tile/entries/001.p/45",
        "tile/entries/001",
        "tile/1/000.p/2",
    ];
    for path in garbage {
        std::fs::write(root.join(path), b"torn").unwrap();
    }
    let store = TileStore::open(root, 1 << 20).unwrap();
    for path in garbage {
        assert!(!exists(root, path), "{path} stayed");
    }
    assert!(exists(root, "tile/0/001.p/44"));
    assert_eq!(store.head().root, reference(300).root());
    fill(&store, 300, 700, 64);
    assert_eq!(store.head().root, reference(700).root());
    assert_eq!(store.entry(699).unwrap(), Some(entry(699)));
}

#[test]
fn a_failed_commit_changes_nothing_and_the_next_one_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = TileStore::open(root, 1 << 20).unwrap();
    fill(&store, 0, 250, 250);
    // Where the commit that completes the first tile renames it, a directory stands in the way.
    let obstacle = root.join("tile/0/000");
    std::fs::create_dir_all(obstacle.join("x")).unwrap();
    let batch: Vec<Vec<u8>> = (250..260).map(entry).collect();
    let refused = store.append(250, &batch);
    assert!(matches!(refused, Err(Error::Storage(_))), "{refused:?}");
    assert_eq!(store.head().size, 250);
    assert_eq!(store.entry(250).unwrap(), None);
    let skipping = store.append(251, &[entry(251)]);
    assert!(skipping.is_err(), "appends continue at the head");
    std::fs::remove_dir_all(&obstacle).unwrap();
    fill(&store, 250, 600, 50);
    assert_eq!(store.head().root, reference(600).root());
    // Nothing of the refused commit is in the write-ahead file either.
    drop(store);
    let store = TileStore::open(root, 1 << 20).unwrap();
    assert_eq!(store.head().root, reference(600).root());
}

#[test]
fn a_crash_before_the_tiles_are_synced_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = TileStore::open(root, 1 << 20).unwrap();
    fill(&store, 0, 1000, 7);
    store.sync_now().unwrap();
    fill(&store, 1000, 1700, 33);
    // The process dies: the tiles since the sync were never synced, and the full tiles it
    // wrote may be torn; the write-ahead file holds every acknowledged commit.
    drop(store);
    std::fs::write(root.join("tile/0/005"), b"torn").unwrap();
    std::fs::remove_file(root.join("tile/entries/004")).unwrap();
    let store = TileStore::open(root, 1 << 20).unwrap();
    assert_eq!(store.head().size, 1700);
    assert_eq!(store.head().root, reference(1700).root());
    assert_eq!(store.entry(1699).unwrap(), Some(entry(1699)));
    assert_eq!(store.entry(1100).unwrap(), Some(entry(1100)));
    let proof: Vec<Vec<u8>> = inclusion_proof(&store, 1300, 1700)
        .unwrap()
        .iter()
        .map(|h| h.to_vec())
        .collect();
    verify_inclusion(
        1300,
        1700,
        &merkle::leaf_hash(&entry(1300)),
        &proof,
        &reference(1700).root(),
    )
    .unwrap();
    // Replayed and synced: the write-ahead file is empty again.
    assert_eq!(std::fs::metadata(root.join("wal")).unwrap().len(), 0);
}

#[test]
fn a_head_the_tiles_do_not_hash_to_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = TileStore::open(root, 1 << 20).unwrap();
    fill(&store, 0, 10, 10);
    store.sync_now().unwrap();
    drop(store);
    let mut tile = std::fs::read(root.join("tile/0/000.p/10")).unwrap();
    tile[40] ^= 1;
    std::fs::write(root.join("tile/0/000.p/10"), tile).unwrap();
    assert!(matches!(
        TileStore::open(root, 1 << 20),
        Err(Error::Tampered(_))
    ));
    std::fs::write(root.join("head"), b"{\"size\": 10}").unwrap();
    assert!(matches!(
        TileStore::open(root, 1 << 20),
        Err(Error::Corrupt(_))
    ));
}

#[test]
fn an_entry_too_long_for_a_bundle_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = TileStore::open(dir.path(), 1 << 20).unwrap();
    let long = vec![b'x'; MAX_ENTRY + 1];
    assert!(matches!(
        store.append(0, &[entry(0), long]),
        Err(Error::Unavailable(_))
    ));
    assert_eq!(store.head().size, 0);
    fill(&store, 0, 3, 3);
    assert_eq!(store.head().root, reference(3).root());
}

#[test]
fn the_cache_stays_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let store = TileStore::open(dir.path(), 3 * 8192).unwrap();
    fill(&store, 0, 256 * 10, 256);
    for index in 0..10 {
        store
            .read(Tile::Hashes {
                level: 0,
                index,
                width: WIDTH,
            })
            .unwrap()
            .unwrap();
        let (used, budget) = store.cache_use();
        assert!(used <= budget, "{used} > {budget}");
    }
}

#[test]
fn a_second_opener_is_refused_while_the_log_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = TileStore::open(dir.path(), 1 << 20).unwrap();
    fill(&store, 0, 3, 3);
    let second = TileStore::open(dir.path(), 1 << 20);
    assert!(
        matches!(&second, Err(Error::Unavailable(m)) if m.contains("in use")),
        "{second:?}"
    );
    drop(store);
    let reopened = TileStore::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(reopened.head().root, reference(3).root());
}
