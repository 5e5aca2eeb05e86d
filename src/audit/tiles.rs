//! The log on disk as C2SP tlog-tiles (`c2sp.org/tlog-tiles`), the layout of Go's checksum
//! database, Sigsum, Tessera and Rekor v2:
//!
//! - `tile/<L>/<N>[.p/<W>]`: hash tiles, 256 hashes of Merkle level `8L` each (level 0 holds
//!   the leaf hashes); `tile/entries/<N>[.p/<W>]`: entry bundles, each entry prefixed by its
//!   length as a big-endian `u16` (see [`path`]).
//! - `head`: the local tree head, `{"size", "root"}`: how much of the above is committed.
//!
//! A full tile or bundle never changes once written; only the right edge (partial tiles, one
//! per level, and the partial bundle) gets a new file per commit, under its new width. A commit
//! writes every file to a temporary name, `fdatasync`s it, renames it into place, `fsync`s the
//! directories, and only then replaces `head` the same way: nothing past the head is ever read,
//! so a crash mid-commit leaves files that the next commit overwrites and start-up discards.
//! Older widths of a partial tile stay until the tile is full (a client holding an older
//! checkpoint may ask for them); then its `.p` directory goes.
//!
//! Memory: the right edge (at most 255 entries and 255 hashes per level) and a cache of tiles
//! bounded in bytes. Nothing per entry stays in memory.

pub mod path;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{ErrorKind, Write as _};
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

const HEAD: &str = "head";

/// The committed head as `head` stores it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadFile {
    size: u64,
    /// Hex.
    root: String,
}

/// The right edge the writer extends: the tree's frontier, the hashes in the rightmost tile of
/// each level, the entries in the rightmost bundle.
#[derive(Debug, Clone, Default)]
struct Edge {
    frontier: Frontier,
    rows: Vec<Vec<Hash>>,
    bundle: Vec<Vec<u8>>,
}

/// Bytes of tiles and bundles read lately, bounded in bytes.
struct Cache {
    tiles: LruCache<Tile, Arc<Vec<u8>>>,
    bytes: usize,
    budget: usize,
}

impl Cache {
    fn get(&mut self, tile: &Tile) -> Option<Arc<Vec<u8>>> {
        self.tiles.get(tile).cloned()
    }

    fn put(&mut self, tile: Tile, bytes: Arc<Vec<u8>>) {
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
    head: RwLock<Head>,
    edge: Mutex<Edge>,
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

fn hashes(bytes: &[u8]) -> Vec<Hash> {
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

impl TileStore {
    /// Opens (or creates) the tiles under `root`, keeping at most `cache_bytes` of tiles in
    /// memory. Files a crash left past the head are discarded.
    pub fn open(root: &Path, cache_bytes: usize) -> Result<Self, Error> {
        fs::create_dir_all(root).map_err(|e| io("creating", root, e))?;
        let head = read_head(root)?;
        let store = TileStore {
            root: root.to_owned(),
            head: RwLock::new(head),
            edge: Mutex::new(Edge::default()),
            cache: Mutex::new(Cache {
                tiles: LruCache::unbounded(),
                bytes: 0,
                budget: cache_bytes,
            }),
        };
        store.discard_past_head()?;
        let edge = store.load_edge()?;
        if edge.frontier.root() != head.root {
            return Err(Error::Tampered(format!(
                "the tiles' right edge does not hash to the stored head at size {}",
                head.size
            )));
        }
        *store.edge.lock().unwrap_or_else(|p| p.into_inner()) = edge;
        Ok(store)
    }

    /// The committed head.
    pub fn head(&self) -> Head {
        *self.head.read().unwrap_or_else(|p| p.into_inner())
    }

    /// How many bytes of tiles the cache holds, and may hold.
    pub fn cache_use(&self) -> (usize, usize) {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        (cache.bytes, cache.budget)
    }

    /// A tile's bytes as stored, if it is within the committed tree: a partial tile of a width
    /// the tile has since outgrown is the full tile's prefix.
    pub fn read(&self, tile: Tile) -> Result<Option<Arc<Vec<u8>>>, Error> {
        let size = self.head().size;
        let have = match tile {
            Tile::Hashes { level, index, .. } => width_in(size, level, index),
            Tile::Entries { index, .. } => width_in(size, 0, index),
        };
        if tile.width() > have {
            return Ok(None);
        }
        if let Some(bytes) = self.cache_get(&tile) {
            return Ok(Some(bytes));
        }
        let bytes = match fs::read(self.root.join(tile.path())) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound && tile.is_partial() => {
                // Outgrown since: the tile is full now, or this width was never committed.
                match fs::read(self.root.join(tile.full().path())) {
                    Ok(full) => self.prefix(tile, &full)?,
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(io("reading", &self.root.join(tile.full().path()), e)),
                }
            }
            Err(e) => return Err(io("reading", &self.root.join(tile.path()), e)),
        };
        self.check_length(tile, &bytes)?;
        let bytes = Arc::new(bytes);
        self.cache_put(tile, Arc::clone(&bytes));
        Ok(Some(bytes))
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

    /// The hashes of tile `index` at `level`, as wide as the tree of `size` leaves has it.
    fn row(&self, level: u32, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        let width = width_in(size, level, index);
        let tile = Tile::Hashes {
            level,
            index,
            width,
        };
        let bytes = self
            .read(tile)?
            .ok_or_else(|| corrupt(format!("{} is missing", tile.path())))?;
        Ok(hashes(&bytes))
    }

    /// The entries of bundle `index`, as wide as the committed tree has it.
    fn bundle(&self, index: u64, size: u64) -> Result<Vec<Vec<u8>>, Error> {
        let tile = Tile::Entries {
            index,
            width: width_in(size, 0, index),
        };
        let bytes = self
            .read(tile)?
            .ok_or_else(|| corrupt(format!("{} is missing", tile.path())))?;
        Ok(bundle_entries(&bytes)?
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect())
    }

    /// Entry `index`, if the committed tree holds it.
    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, Error> {
        let size = self.head().size;
        if index >= size {
            return Ok(None);
        }
        let bundle = self.bundle(index / WIDTH, size)?;
        let offset = usize::try_from(index % WIDTH).unwrap_or(usize::MAX);
        Ok(bundle.into_iter().nth(offset))
    }

    /// Entries from `from` on, at most `limit`, with their indexes.
    pub fn entries(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let size = self.head().size;
        let mut found = Vec::new();
        let mut next = from;
        while next < size && found.len() < limit {
            let bundle = self.bundle(next / WIDTH, size)?;
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

    /// The right edge of the committed tree, read from its tiles.
    fn load_edge(&self) -> Result<Edge, Error> {
        let size = self.head().size;
        let frontier = Frontier::load(self, size)?;
        let mut rows = Vec::new();
        let mut level = 0;
        while hashes_at(size, level) > 0 {
            let count = hashes_at(size, level);
            rows.push(match count % WIDTH {
                0 => Vec::new(),
                _ => self.row(level, count / WIDTH, size)?,
            });
            level += 1;
        }
        let bundle = match size % WIDTH {
            0 => Vec::new(),
            _ => self.bundle(size / WIDTH, size)?,
        };
        Ok(Edge {
            frontier,
            rows,
            bundle,
        })
    }

    /// Removes what a crash left past the head: wider partial tiles and full tiles the head
    /// does not cover, at the right edge of each level.
    fn discard_past_head(&self) -> Result<(), Error> {
        let size = self.head().size;
        let mut edges: Vec<(Tile, u64)> = Vec::new();
        for level in 0..=(63 / HEIGHT) {
            let count = hashes_at(size, level);
            let index = count / WIDTH;
            let tile = Tile::Hashes {
                level,
                index,
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
            // The rightmost tile is partial (or absent): no full file, no wider partial.
            let full_path = self.root.join(full.path());
            remove_if_present(&full_path)?;
            let partials = PathBuf::from(format!("{}.p", full_path.display()));
            if let Ok(listing) = fs::read_dir(&partials) {
                for item in listing.flatten() {
                    let name = item.file_name();
                    let keep = name
                        .to_str()
                        .and_then(|n| n.parse::<u64>().ok())
                        .is_some_and(|w| w <= width && is_width_name(&name));
                    if !keep {
                        remove_if_present(&item.path())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Appends `entries` as leaves `first…` and commits them; returns the new head once every
    /// file and the head are durable. On failure, the edge is read back from disk.
    pub fn append(&self, first: u64, entries: &[Vec<u8>]) -> Result<Head, Error> {
        if let Some(long) = entries.iter().find(|e| e.len() > MAX_ENTRY) {
            return Err(Error::Unavailable(format!(
                "an audit entry of {} bytes (at most {MAX_ENTRY})",
                long.len()
            )));
        }
        let mut edge = self.edge.lock().unwrap_or_else(|p| p.into_inner());
        if first != edge.frontier.size() {
            return Err(Error::Unavailable(format!(
                "append at {first}, but the log holds {}",
                edge.frontier.size()
            )));
        }
        let outcome = self.commit(&mut edge, entries);
        if outcome.is_err() {
            match self.load_edge() {
                Ok(reloaded) => *edge = reloaded,
                Err(error) => tracing::error!(%error, "the audit log's edge could not be reloaded"),
            }
        }
        outcome
    }

    fn commit(&self, edge: &mut Edge, entries: &[Vec<u8>]) -> Result<Head, Error> {
        let mut files: Vec<(Tile, Vec<u8>)> = Vec::new();
        let mut dirty = BTreeSet::new();
        let mut bundle_dirty = false;
        for entry in entries {
            let index = edge.frontier.size();
            edge.bundle.push(entry.clone());
            bundle_dirty = true;
            if edge.bundle.len() as u64 == WIDTH {
                let bytes = bundle_bytes(edge.bundle.iter().map(Vec::as_slice));
                files.push((
                    Tile::Entries {
                        index: index / WIDTH,
                        width: WIDTH,
                    },
                    bytes,
                ));
                edge.bundle.clear();
            }
            let mut completed = Vec::new();
            edge.frontier
                .push(merkle::leaf_hash(entry), |level, node, hash| {
                    if level % HEIGHT == 0 {
                        completed.push((level / HEIGHT, node, hash));
                    }
                });
            for (level, node, hash) in completed {
                let row = level as usize;
                if edge.rows.len() <= row {
                    edge.rows.resize(row + 1, Vec::new());
                }
                edge.rows[row].push(hash);
                dirty.insert(level);
                if edge.rows[row].len() as u64 == WIDTH {
                    files.push((
                        Tile::Hashes {
                            level,
                            index: node / WIDTH,
                            width: WIDTH,
                        },
                        edge.rows[row].concat(),
                    ));
                    edge.rows[row].clear();
                }
            }
        }
        let size = edge.frontier.size();
        for level in dirty {
            let row = &edge.rows[level as usize];
            if !row.is_empty() {
                let tile = Tile::Hashes {
                    level,
                    index: hashes_at(size, level) / WIDTH,
                    width: row.len() as u64,
                };
                files.push((tile, row.concat()));
            }
        }
        if bundle_dirty && !edge.bundle.is_empty() {
            let tile = Tile::Entries {
                index: size / WIDTH,
                width: edge.bundle.len() as u64,
            };
            files.push((tile, bundle_bytes(edge.bundle.iter().map(Vec::as_slice))));
        }
        let mut directories = BTreeSet::new();
        for (tile, bytes) in &files {
            self.write(&tile.path(), bytes, &mut directories)?;
        }
        sync_directories(&directories)?;
        let head = Head {
            size,
            root: edge.frontier.root(),
        };
        self.write_head(head)?;
        *self.head.write().unwrap_or_else(|p| p.into_inner()) = head;
        for (tile, bytes) in files {
            if !tile.is_partial() {
                // Clients that ask for an outgrown width get the full tile's prefix.
                let partials = self.root.join(format!("{}.p", tile.path()));
                if let Err(error) = fs::remove_dir_all(&partials)
                    && error.kind() != ErrorKind::NotFound
                {
                    tracing::warn!(%error, path = %partials.display(), "an outgrown partial tile stays");
                }
            }
            self.cache_put(tile, Arc::new(bytes));
        }
        Ok(head)
    }

    /// Writes `bytes` at `relative` durably: to a temporary name, synced, renamed. The
    /// directories to sync before the head names them are added to `directories`.
    fn write(
        &self,
        relative: &str,
        bytes: &[u8],
        directories: &mut BTreeSet<PathBuf>,
    ) -> Result<(), Error> {
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
            .and_then(|()| file.sync_data())
            .map_err(|e| io("writing", &temporary, e))?;
        fs::rename(&temporary, &path).map_err(|e| io("renaming", &path, e))?;
        directories.insert(dir.to_owned());
        Ok(())
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
        self.write(HEAD, &bytes, &mut directories)?;
        sync_directories(&directories)
    }
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

    /// Read from the tile that holds it: a perfect subtree of `2^level` leaves is the root over
    /// `2^(level mod 8)` hashes of its tile.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Error> {
        let tile_level = level / HEIGHT;
        let within = level % HEIGHT;
        let first = index
            .checked_shl(within)
            .ok_or_else(|| corrupt(format!("no subtree ({level}, {index})")))?;
        let count = 1u64 << within;
        let size = self.head().size;
        if first + count > hashes_at(size, tile_level) {
            return Err(corrupt(format!(
                "subtree ({level}, {index}) is not in a tree of {size}"
            )));
        }
        let row = self.row(tile_level, first / WIDTH, size)?;
        let start = usize::try_from(first % WIDTH).unwrap_or(usize::MAX);
        let span = row
            .get(start..start + count as usize)
            .ok_or_else(|| corrupt(format!("subtree ({level}, {index}) is past its tile")))?;
        Ok(perfect_root(span))
    }
}

#[cfg(test)]
mod tests;
