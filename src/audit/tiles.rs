//! The log on disk as C2SP tlog-tiles (`c2sp.org/tlog-tiles`), the layout of Go's checksum
//! database, Sigsum, Tessera and Rekor v2:
//!
//! - `tile/<L>/<N>[.p/<W>]`: hash tiles, 256 hashes of Merkle level `8L` each (level 0 holds
//!   the leaf hashes); `tile/entries/<N>[.p/<W>]`: entry bundles, each entry prefixed by its
//!   length as a big-endian `u16` (see [`path`]).
//! - `head`: `{"size", "root"}`, how much of the above is durable;
//! - `wal`: the commits since ([`wal`]).
//!
//! A commit (a batch of appends) writes the full tiles and bundles it completes (to a temporary
//! name, then renamed), then appends one record to `wal` and `fdatasync`s it: that is when the
//! entries are durable and their callers are answered. Every [`SYNC_EVERY`] entries the tiles
//! written since are synced, the right edge's partial tiles written and synced, the directories
//! synced, and only then `head` replaced and `wal` emptied. At open, `wal`'s records past the
//! head are applied again: start-up reads the head, the edge and at most [`SYNC_EVERY`] entries,
//! whatever the log's size. Files past the head are never read; a crash can leave some, which
//! the next sync overwrites or start-up removes.
//!
//! Memory: the right edge (at most 255 entries, and 255 hashes per level), served from memory,
//! and a cache of full tiles bounded in bytes. Nothing per entry stays in memory.

pub mod path;
pub mod wal;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{ErrorKind, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use lru::LruCache;
use serde::{Deserialize, Serialize};

pub use self::path::Tile;
use self::path::{HEIGHT, WIDTH, hashes_at, width_in};
use super::Error;
use super::log::Head;
use super::merkle::{self, Frontier, Hash, Nodes};

/// The largest entry a bundle can hold (its length is a `u16`).
pub const MAX_ENTRY: usize = u16::MAX as usize;

/// Entries between syncs of the tiles (and start-up replays at most this many).
pub const SYNC_EVERY: u64 = 16_384;

const HEAD: &str = "head";

/// The durable head as `head` stores it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadFile {
    size: u64,
    /// Hex.
    root: String,
}

/// The right edge: the tree's frontier, the hashes in the rightmost tile of each level, the
/// entries in the rightmost bundle. Cheap to clone (entries are shared).
#[derive(Debug, Clone, Default)]
pub(super) struct Edge {
    frontier: Frontier,
    rows: Vec<Vec<Hash>>,
    bundle: Vec<Arc<[u8]>>,
}

impl Edge {
    /// The right edge of a tree whose frontier is `frontier` and whose rightmost hash tiles
    /// hold `rows` (by level), without the entries of its rightmost bundle (a log that keeps
    /// entries one by one has no use for them).
    pub(super) fn from_rows(frontier: Frontier, rows: Vec<Vec<Hash>>) -> Self {
        Edge {
            frontier,
            rows,
            bundle: Vec::new(),
        }
    }

    /// The size and root of the tree the edge ends.
    pub(super) fn head(&self) -> Head {
        Head {
            size: self.frontier.size(),
            root: self.frontier.root(),
        }
    }

    /// The hashes in the rightmost tile of each level.
    pub(super) fn rows(&self) -> &[Vec<Hash>] {
        &self.rows
    }

    /// Appends `entries` as leaves; returns the full hash tiles and entry bundles they complete,
    /// with their bytes.
    pub(super) fn extend(&mut self, entries: &[Vec<u8>]) -> Vec<(Tile, Vec<u8>)> {
        let mut files: Vec<(Tile, Vec<u8>)> = Vec::new();
        for entry in entries {
            let index = self.frontier.size();
            self.bundle.push(Arc::from(entry.as_slice()));
            if self.bundle.len() as u64 == WIDTH {
                let bytes = bundle_bytes(self.bundle.iter().map(|e| &e[..]));
                files.push((
                    Tile::Entries {
                        index: index / WIDTH,
                        width: WIDTH,
                    },
                    bytes,
                ));
                self.bundle.clear();
            }
            let mut completed = Vec::new();
            self.frontier
                .push(merkle::leaf_hash(entry), |level, node, hash| {
                    if level % HEIGHT == 0 {
                        completed.push((level / HEIGHT, node, hash));
                    }
                });
            for (level, node, hash) in completed {
                let row = level as usize;
                if self.rows.len() <= row {
                    self.rows.resize(row + 1, Vec::new());
                }
                self.rows[row].push(hash);
                if self.rows[row].len() as u64 == WIDTH {
                    files.push((
                        Tile::Hashes {
                            level,
                            index: node / WIDTH,
                            width: WIDTH,
                        },
                        self.rows[row].concat(),
                    ));
                    self.rows[row].clear();
                }
            }
        }
        files
    }
}

/// What readers see: the committed head and its edge, swapped together.
#[derive(Debug, Clone)]
struct View {
    head: Head,
    edge: Arc<Edge>,
}

/// What only the writer touches.
#[derive(Debug)]
struct Writing {
    edge: Edge,
    wal: wal::Wal,
    /// Full tiles and bundles written since the last sync, and their directories.
    unsynced: Vec<PathBuf>,
    directories: BTreeSet<PathBuf>,
    /// Tiles completed since the last sync, whose partial widths go at the next one.
    completed: Vec<Tile>,
    since_sync: u64,
}

/// Bytes of full tiles and bundles read lately, bounded in bytes.
pub(super) struct Cache {
    tiles: LruCache<Tile, Arc<Vec<u8>>>,
    bytes: usize,
    budget: usize,
}

impl Cache {
    /// An empty cache of at most `budget` bytes.
    pub(super) fn new(budget: usize) -> Self {
        Cache {
            tiles: LruCache::unbounded(),
            bytes: 0,
            budget,
        }
    }

    /// The bytes held, and the most it may hold.
    pub(super) fn usage(&self) -> (usize, usize) {
        (self.bytes, self.budget)
    }

    pub(super) fn get(&mut self, tile: &Tile) -> Option<Arc<Vec<u8>>> {
        self.tiles.get(tile).cloned()
    }

    pub(super) fn put(&mut self, tile: Tile, bytes: Arc<Vec<u8>>) {
        if bytes.len() > self.budget {
            return;
        }
        self.bytes += bytes.len();
        if let Some(old) = self.tiles.put(tile, bytes) {
            self.bytes -= old.len();
        }
        while self.bytes > self.budget {
            match self.tiles.pop_lru() {
                Some((_, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
    }
}

/// The tiles under one directory.
pub struct TileStore {
    root: PathBuf,
    /// Held (an exclusive `flock` on `lock`) while open: one writer per log.
    _lock: File,
    view: RwLock<View>,
    writing: Mutex<Writing>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for TileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TileStore")
            .field("root", &self.root)
            .field("head", &self.head())
            .finish()
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{what} {}: {e}", path.display()))
}

fn corrupt(what: String) -> Error {
    Error::Corrupt(what)
}

/// Entries in a bundle's bytes, in order.
pub fn bundle_entries(bytes: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (length, tail) = rest
            .split_at_checked(2)
            .ok_or_else(|| corrupt("a bundle ends inside a length".into()))?;
        let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
        let (entry, tail) = tail
            .split_at_checked(length)
            .ok_or_else(|| corrupt("a bundle ends inside an entry".into()))?;
        entries.push(entry);
        rest = tail;
    }
    Ok(entries)
}

/// A bundle's bytes.
pub fn bundle_bytes<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in entries {
        let length = u16::try_from(entry.len()).unwrap_or(u16::MAX);
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend_from_slice(&entry[..usize::from(length)]);
    }
    bytes
}

pub(super) fn hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .map(|chunk| {
            let mut hash = [0; 32];
            hash.copy_from_slice(chunk);
            hash
        })
        .collect()
}

/// The root of a perfect subtree whose leaves (at its lowest level) are `row`.
fn perfect_root(row: &[Hash]) -> Hash {
    let mut level: Vec<Hash> = row.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|pair| merkle::node_hash(&pair[0], &pair[1]))
            .collect();
    }
    level.first().copied().unwrap_or_else(merkle::empty_root)
}

impl View {
    /// How many hashes (or entries) `tile` holds in this tree.
    fn have(&self, tile: Tile) -> u64 {
        let size = self.head.size;
        match tile {
            Tile::Hashes { level, index, .. } => width_in(size, level, index),
            Tile::Entries { index, .. } => width_in(size, 0, index),
        }
    }

    /// The first `tile.width()` items of the edge's tile at `tile`'s level.
    fn edge_tile(&self, tile: Tile) -> Result<Vec<u8>, Error> {
        let width = usize::try_from(tile.width()).unwrap_or(usize::MAX);
        let missing = || corrupt(format!("{} is not in the edge", tile.path()));
        match tile {
            Tile::Hashes { level, .. } => {
                let row = self.edge.rows.get(level as usize).ok_or_else(missing)?;
                Ok(row.get(..width).ok_or_else(missing)?.concat())
            }
            Tile::Entries { .. } => {
                let bundle = self.edge.bundle.get(..width).ok_or_else(missing)?;
                Ok(bundle_bytes(bundle.iter().map(|e| &e[..])))
            }
        }
    }

    /// Where the perfect subtree `(level, index)` is: its tile, and the span of that tile's
    /// hashes it is the root over.
    fn locate(&self, level: u32, index: u64) -> Result<(Tile, Range<usize>), Error> {
        path::locate(self.head.size, level, index).ok_or_else(|| {
            corrupt(format!(
                "subtree ({level}, {index}) is not in a tree of {}",
                self.head.size
            ))
        })
    }

    /// A perfect subtree of `2^level` leaves: the root over `2^(level mod 8)` hashes of the tile
    /// that holds it.
    fn node(&self, store: &TileStore, level: u32, index: u64) -> Result<Hash, Error> {
        let (tile, span) = self.locate(level, index)?;
        let bytes = store
            .read_in(self, tile)?
            .ok_or_else(|| corrupt(format!("{} is missing", tile.path())))?;
        span_root(&bytes, span, tile)
    }

    /// [`Self::node`], from the files alone (at open, before the edge is loaded).
    fn node_from_files(&self, store: &TileStore, level: u32, index: u64) -> Result<Hash, Error> {
        let (tile, span) = self.locate(level, index)?;
        let bytes = store.read_file(tile)?;
        span_root(&bytes, span, tile)
    }
}

/// The root over the hashes `span` of `tile`, whose bytes are `bytes` (see [`path::locate`]).
pub fn span_root(bytes: &[u8], span: Range<usize>, tile: Tile) -> Result<Hash, Error> {
    let span = bytes
        .get(span.start * 32..span.end * 32)
        .ok_or_else(|| corrupt(format!("{} is short", tile.path())))?;
    Ok(perfect_root(&hashes(span)))
}

impl TileStore {
    /// Opens (or creates) the tiles under `root`, keeping at most `cache_bytes` of full tiles
    /// in memory: reads the head and its edge, checks that they agree, removes what a crash left
    /// past the head, and applies the write-ahead file's records past it again.
    pub fn open(root: &Path, cache_bytes: usize) -> Result<Self, Error> {
        fs::create_dir_all(root).map_err(|e| io("creating", root, e))?;
        let lock_path = root.join("lock");
        let lock = File::create(&lock_path).map_err(|e| io("creating", &lock_path, e))?;
        lock.try_lock().map_err(|e| {
            Error::Unavailable(format!(
                "{} is in use by another process ({e})",
                root.display()
            ))
        })?;
        let head = read_head(root)?;
        let (wal, records) = wal::Wal::open(root)?;
        let store = TileStore {
            root: root.to_owned(),
            _lock: lock,
            view: RwLock::new(View {
                head,
                edge: Arc::default(),
            }),
            writing: Mutex::new(Writing {
                edge: Edge::default(),
                wal,
                unsynced: Vec::new(),
                directories: BTreeSet::new(),
                completed: Vec::new(),
                since_sync: 0,
            }),
            cache: Mutex::new(Cache::new(cache_bytes)),
        };
        store.discard_past_head()?;
        let edge = store.load_edge(head)?;
        if edge.frontier.root() != head.root {
            return Err(Error::Tampered(format!(
                "the tiles' right edge does not hash to the stored head at size {}",
                head.size
            )));
        }
        store.publish(View {
            head,
            edge: Arc::new(edge.clone()),
        });
        let mut writing = store.lock_writing();
        writing.edge = edge;
        let mut replayed = 0;
        for record in records {
            let size = writing.edge.frontier.size();
            if record.first + record.entries.len() as u64 <= size {
                continue;
            }
            if record.first != size {
                return Err(corrupt(format!(
                    "the write-ahead file goes on at {} after {size}",
                    record.first
                )));
            }
            store.apply(&mut writing, &record.entries, false)?;
            replayed += record.entries.len();
        }
        if replayed > 0 {
            store.sync(&mut writing)?;
            tracing::info!(
                replayed,
                "audit entries applied again from the write-ahead file"
            );
        } else if writing.wal.bytes() > 0 {
            writing.wal.clear()?;
        }
        drop(writing);
        // What lay past the old head and the replay did not overwrite.
        store.discard_past_head()?;
        Ok(store)
    }

    fn lock_writing(&self) -> std::sync::MutexGuard<'_, Writing> {
        self.writing.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn view(&self) -> View {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn publish(&self, view: View) {
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = view;
    }

    /// The committed head: what is durable, in the tiles or the write-ahead file.
    pub fn head(&self) -> Head {
        self.view.read().unwrap_or_else(|p| p.into_inner()).head
    }

    /// How many bytes of tiles the cache holds, and may hold.
    pub fn cache_use(&self) -> (usize, usize) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).usage()
    }

    /// A tile's bytes, if the committed tree holds it at that width: the edge's from memory,
    /// full ones from disk, and a partial width a tile has outgrown as its full tile's prefix.
    pub fn read(&self, tile: Tile) -> Result<Option<Arc<Vec<u8>>>, Error> {
        self.read_in(&self.view(), tile)
    }

    fn read_in(&self, view: &View, tile: Tile) -> Result<Option<Arc<Vec<u8>>>, Error> {
        let have = view.have(tile);
        if tile.width() > have || tile.width() == 0 {
            return Ok(None);
        }
        if have < WIDTH {
            return Ok(Some(Arc::new(view.edge_tile(tile)?)));
        }
        let full = self.read_full(tile.full())?;
        if tile.is_partial() {
            return Ok(Some(Arc::new(self.prefix(tile, &full)?)));
        }
        Ok(Some(full))
    }

    /// A full tile or bundle, through the cache.
    fn read_full(&self, tile: Tile) -> Result<Arc<Vec<u8>>, Error> {
        if let Some(bytes) = self.cache_get(&tile) {
            return Ok(bytes);
        }
        let bytes = self.read_path(tile)?;
        let bytes = Arc::new(bytes);
        self.cache_put(tile, Arc::clone(&bytes));
        Ok(bytes)
    }

    /// A tile as its file holds it (at open, for the durable head).
    fn read_file(&self, tile: Tile) -> Result<Vec<u8>, Error> {
        if !tile.is_partial() {
            return Ok(self.read_full(tile)?.to_vec());
        }
        self.read_path(tile)
    }

    /// `tile`'s file, which the committed tree needs: missing or the wrong length, the log is
    /// corrupt.
    fn read_path(&self, tile: Tile) -> Result<Vec<u8>, Error> {
        let path = self.root.join(tile.path());
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(corrupt(format!("{} is missing", tile.path())));
            }
            Err(e) => return Err(io("reading", &path, e)),
        };
        self.check_length(tile, &bytes)?;
        Ok(bytes)
    }

    fn cache_get(&self, tile: &Tile) -> Option<Arc<Vec<u8>>> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tile)
    }

    fn cache_put(&self, tile: Tile, bytes: Arc<Vec<u8>>) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(tile, bytes);
    }

    /// The first `tile.width()` hashes or entries of its full tile's bytes.
    fn prefix(&self, tile: Tile, full: &[u8]) -> Result<Vec<u8>, Error> {
        let width = usize::try_from(tile.width()).unwrap_or(usize::MAX);
        match tile {
            Tile::Hashes { .. } => full
                .get(..width * 32)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| corrupt(format!("{} is short", tile.full().path()))),
            Tile::Entries { .. } => {
                let entries = bundle_entries(full)?;
                Ok(bundle_bytes(entries.into_iter().take(width)))
            }
        }
    }

    fn check_length(&self, tile: Tile, bytes: &[u8]) -> Result<(), Error> {
        let width = usize::try_from(tile.width()).unwrap_or(usize::MAX);
        let good = match tile {
            Tile::Hashes { .. } => bytes.len() == width * 32,
            Tile::Entries { .. } => bundle_entries(bytes).is_ok_and(|e| e.len() == width),
        };
        if good {
            Ok(())
        } else {
            Err(corrupt(format!(
                "{} does not hold {width} items",
                tile.path()
            )))
        }
    }

    /// The entries of bundle `index` in `view`'s tree.
    fn bundle(&self, view: &View, index: u64) -> Result<Vec<Vec<u8>>, Error> {
        let tile = Tile::Entries {
            index,
            width: view.have(Tile::Entries { index, width: 1 }),
        };
        let bytes = self
            .read_in(view, tile)?
            .ok_or_else(|| corrupt(format!("{} is missing", tile.path())))?;
        Ok(bundle_entries(&bytes)?
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect())
    }

    /// Entry `index`, if the committed tree holds it.
    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, Error> {
        let view = self.view();
        if index >= view.head.size {
            return Ok(None);
        }
        let bundle = self.bundle(&view, index / WIDTH)?;
        let offset = usize::try_from(index % WIDTH).unwrap_or(usize::MAX);
        Ok(bundle.into_iter().nth(offset))
    }

    /// Entries from `from` on, at most `limit`, with their indexes.
    pub fn entries(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let view = self.view();
        let mut found = Vec::new();
        let mut next = from;
        while next < view.head.size && found.len() < limit {
            let bundle = self.bundle(&view, next / WIDTH)?;
            let first = next / WIDTH * WIDTH;
            for (offset, entry) in bundle.into_iter().enumerate() {
                let index = first + offset as u64;
                if index >= next && found.len() < limit {
                    found.push((index, entry));
                }
            }
            next = first + WIDTH;
        }
        Ok(found)
    }

    /// The right edge of the durable tree at `head`, read from its files.
    fn load_edge(&self, head: Head) -> Result<Edge, Error> {
        let size = head.size;
        let on_disk = OnDisk {
            store: self,
            view: View {
                head,
                edge: Arc::default(),
            },
        };
        let frontier = Frontier::load(&on_disk, size)?;
        let mut rows = Vec::new();
        let mut level = 0;
        while hashes_at(size, level) > 0 {
            let count = hashes_at(size, level);
            rows.push(match count % WIDTH {
                0 => Vec::new(),
                width => hashes(&self.read_file(Tile::Hashes {
                    level,
                    index: count / WIDTH,
                    width,
                })?),
            });
            level += 1;
        }
        let bundle = match size % WIDTH {
            0 => Vec::new(),
            width => {
                let bytes = self.read_file(Tile::Entries {
                    index: size / WIDTH,
                    width,
                })?;
                bundle_entries(&bytes)?.into_iter().map(Arc::from).collect()
            }
        };
        Ok(Edge {
            frontier,
            rows,
            bundle,
        })
    }

    /// Removes what a crash left past the durable head at the right edge of each level: a full
    /// tile the head does not cover, and wider partial tiles.
    fn discard_past_head(&self) -> Result<(), Error> {
        let size = self.head().size;
        let mut edges: Vec<(Tile, u64)> = Vec::new();
        for level in 0..=(63 / HEIGHT) {
            let count = hashes_at(size, level);
            let tile = Tile::Hashes {
                level,
                index: count / WIDTH,
                width: WIDTH,
            };
            edges.push((tile, count % WIDTH));
        }
        edges.push((
            Tile::Entries {
                index: size / WIDTH,
                width: WIDTH,
            },
            size % WIDTH,
        ));
        for (full, width) in edges {
            let full_path = self.root.join(full.path());
            remove_if_present(&full_path)?;
            remove_widths(&full_path, |w| w > width)?;
        }
        Ok(())
    }

    /// Appends `entries` as leaves `first…`: the full tiles they complete are written, then
    /// one record in the write-ahead file is made durable; returns the new head. On failure
    /// nothing changes. Every [`SYNC_EVERY`] entries the tiles are synced too.
    pub fn append(&self, first: u64, entries: &[Vec<u8>]) -> Result<Head, Error> {
        if let Some(long) = entries.iter().find(|e| e.len() > MAX_ENTRY) {
            return Err(Error::Unavailable(format!(
                "an audit entry of {} bytes (at most {MAX_ENTRY})",
                long.len()
            )));
        }
        let mut writing = self.lock_writing();
        if first != writing.edge.frontier.size() {
            return Err(Error::Unavailable(format!(
                "append at {first}, but the log holds {}",
                writing.edge.frontier.size()
            )));
        }
        let head = self.apply(&mut writing, entries, true)?;
        if writing.since_sync >= SYNC_EVERY
            && let Err(error) = self.sync(&mut writing)
        {
            tracing::warn!(%error, "syncing the audit tiles failed; the write-ahead file keeps the entries");
        }
        Ok(head)
    }

    /// Applies `entries` to the edge: writes the full tiles and bundles they complete, logs
    /// them in the write-ahead file (unless they are being replayed from it), then publishes the
    /// new head and edge.
    fn apply(&self, writing: &mut Writing, entries: &[Vec<u8>], log: bool) -> Result<Head, Error> {
        let first = writing.edge.frontier.size();
        let mut edge = writing.edge.clone();
        let files = edge.extend(entries);
        let mut written = Vec::new();
        let mut directories = BTreeSet::new();
        for (tile, bytes) in &files {
            written.push(self.write(&tile.path(), bytes, &mut directories, false)?);
        }
        if log {
            writing.wal.append(first, entries)?;
        }
        let head = Head {
            size: edge.frontier.size(),
            root: edge.frontier.root(),
        };
        for (tile, bytes) in files {
            self.cache_put(tile, Arc::new(bytes));
            writing.completed.push(tile);
        }
        writing.unsynced.extend(written);
        writing.directories.extend(directories);
        writing.since_sync += entries.len() as u64;
        writing.edge = edge;
        self.publish(View {
            head,
            edge: Arc::new(writing.edge.clone()),
        });
        Ok(head)
    }

    /// Makes the tiles durable up to the committed head: syncs the full tiles written since the
    /// last sync, writes and syncs the edge's partial tiles, syncs the directories, replaces
    /// `head`, and empties the write-ahead file. (Appends do it every [`SYNC_EVERY`] entries;
    /// a clean shutdown does it too.)
    fn sync(&self, writing: &mut Writing) -> Result<(), Error> {
        let edge = &writing.edge;
        let size = edge.frontier.size();
        let mut directories = writing.directories.clone();
        for path in &writing.unsynced {
            File::open(path)
                .and_then(|file| file.sync_data())
                .map_err(|e| io("syncing", path, e))?;
        }
        let mut partials = Vec::new();
        for (level, row) in edge.rows.iter().enumerate() {
            if row.is_empty() {
                continue;
            }
            let level = level as u32;
            let tile = Tile::Hashes {
                level,
                index: hashes_at(size, level) / WIDTH,
                width: row.len() as u64,
            };
            self.write(&tile.path(), &row.concat(), &mut directories, true)?;
            partials.push(tile);
        }
        if !edge.bundle.is_empty() {
            let tile = Tile::Entries {
                index: size / WIDTH,
                width: edge.bundle.len() as u64,
            };
            let bytes = bundle_bytes(edge.bundle.iter().map(|e| &e[..]));
            self.write(&tile.path(), &bytes, &mut directories, true)?;
            partials.push(tile);
        }
        sync_directories(&directories)?;
        self.write_head(Head {
            size,
            root: edge.frontier.root(),
        })?;
        writing.wal.clear()?;
        // Partial tiles on disk only serve start-up: one width per tile is enough.
        for tile in writing.completed.drain(..) {
            remove_widths(&self.root.join(tile.path()), |_| true)?;
        }
        for tile in partials {
            let width = tile.width();
            remove_widths(&self.root.join(tile.full().path()), |w| w != width)?;
        }
        writing.unsynced.clear();
        writing.directories.clear();
        writing.since_sync = 0;
        Ok(())
    }

    /// [`Self::sync`], from outside the writer (a clean shutdown, tests).
    pub fn sync_now(&self) -> Result<(), Error> {
        let mut writing = self.lock_writing();
        self.sync(&mut writing)
    }

    /// Writes `bytes` at `relative`: to a temporary name, synced if `durable`, renamed. The
    /// directories whose listings changed are added to `directories`; returns the path.
    fn write(
        &self,
        relative: &str,
        bytes: &[u8],
        directories: &mut BTreeSet<PathBuf>,
        durable: bool,
    ) -> Result<PathBuf, Error> {
        let path = self.root.join(relative);
        let dir = path
            .parent()
            .ok_or_else(|| corrupt(format!("{relative} has no directory")))?;
        self.make_directory(dir, directories)?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| corrupt(format!("{relative} has no name")))?;
        let temporary = dir.join(format!(".{name}.tmp"));
        let mut file = File::create(&temporary).map_err(|e| io("creating", &temporary, e))?;
        file.write_all(bytes)
            .and_then(|()| if durable { file.sync_data() } else { Ok(()) })
            .map_err(|e| io("writing", &temporary, e))?;
        fs::rename(&temporary, &path).map_err(|e| io("renaming", &path, e))?;
        directories.insert(dir.to_owned());
        Ok(path)
    }

    /// Creates `dir` and the directories above it that are missing, noting each parent whose
    /// listing changed.
    fn make_directory(&self, dir: &Path, directories: &mut BTreeSet<PathBuf>) -> Result<(), Error> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.make_directory(parent, directories)?;
            directories.insert(parent.to_owned());
        }
        match fs::create_dir(dir) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => Err(io("creating", dir, e)),
            _ => Ok(()),
        }
    }

    fn write_head(&self, head: Head) -> Result<(), Error> {
        let file = HeadFile {
            size: head.size,
            root: crate::hex::encode(&head.root),
        };
        let bytes = serde_json::to_vec(&file)
            .map_err(|e| Error::Storage(format!("encoding the head: {e}")))?;
        let mut directories = BTreeSet::new();
        self.write(HEAD, &bytes, &mut directories, true)?;
        sync_directories(&directories)
    }
}

/// Removes the partial widths of the tile whose full path is `full` that `doomed` names (and
/// their directory, once empty).
fn remove_widths(full: &Path, doomed: impl Fn(u64) -> bool) -> Result<(), Error> {
    let partials = PathBuf::from(format!("{}.p", full.display()));
    let Ok(listing) = fs::read_dir(&partials) else {
        return Ok(());
    };
    let mut left = 0;
    for item in listing.flatten() {
        let name = item.file_name();
        let width = name
            .to_str()
            .filter(|_| is_width_name(&name))
            .and_then(|n| n.parse::<u64>().ok());
        match width {
            Some(width) if !doomed(width) => left += 1,
            _ => remove_if_present(&item.path())?,
        }
    }
    if left == 0 {
        let _ = fs::remove_dir(&partials);
    }
    Ok(())
}

/// Whether a partial tile's file name is a width as the specification writes it.
fn is_width_name(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
}

fn remove_if_present(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io("removing", path, e)),
        _ => Ok(()),
    }
}

fn sync_directories(directories: &BTreeSet<PathBuf>) -> Result<(), Error> {
    for dir in directories {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing", dir, e))?;
    }
    Ok(())
}

fn read_head(root: &Path) -> Result<Head, Error> {
    let path = root.join(HEAD);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Ok(Head {
                size: 0,
                root: merkle::empty_root(),
            });
        }
        Err(e) => return Err(io("reading", &path, e)),
    };
    let file: HeadFile =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("{}: {e}", path.display())))?;
    let root = crate::hex::decode(&file.root)
        .and_then(|r| <[u8; 32]>::try_from(r).ok())
        .ok_or_else(|| {
            corrupt(format!(
                "{}: the root is not 32 bytes of hex",
                path.display()
            ))
        })?;
    Ok(Head {
        size: file.size,
        root,
    })
}

impl Nodes for TileStore {
    type Error = Error;

    /// A perfect subtree of `2^level` leaves, in the committed tree.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Error> {
        self.view().node(self, level, index)
    }
}

/// The durable tree's files alone, as [`Nodes`] (at open, before the edge is loaded).
struct OnDisk<'a> {
    store: &'a TileStore,
    view: View,
}

impl Nodes for OnDisk<'_> {
    type Error = Error;

    fn node(&self, level: u32, index: u64) -> Result<Hash, Error> {
        self.view.node_from_files(self.store, level, index)
    }
}

#[cfg(test)]
mod tests;
