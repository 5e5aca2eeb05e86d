//! The audit log several appliances share, in PostgreSQL: one tree, whichever appliance appends.
//!
//! - **One sequencer.** Each appliance's writer ([`super::log`]) hands its batch to
//!   [`SharedLog::append`], which takes the head's row lock (`SELECT … FOR UPDATE`), reads the
//!   tree's right edge (the rightmost hash tile of each level, one query), integrates the batch,
//!   and writes its entries, the tiles it changed and the new head in the same transaction: the
//!   design of Trillian on MySQL and Tessera on Aurora. Batches from every appliance are
//!   integrated one after another; an index is never given twice; a commit is durable when it
//!   returns, and only then are the batch's callers answered (and only then do they sign).
//! - **Tiles everyone reads.** Entries are rows (a bundle is a range of them); a hash tile is a
//!   row at its latest width, a narrower width being its prefix. Any appliance serves tiles and
//!   proves inclusion and consistency. Full tiles and bundles never change, so they are cached.
//! - **Checkpoints** are signed by the checkpoint key, the same in every appliance's token and
//!   deterministic, so two appliances signing one size keep one note.
//! - **Each appliance a witness.** Every checkpoint an appliance signs or serves is also kept on
//!   its own disk ([`super::checkpoints::Checkpoints`]); at start-up, and each time it reads the
//!   head, the database's tree must extend the latest of them. A database restored to an older
//!   state, or rewritten, is refused by every appliance that saw the newer one, and clients that
//!   kept a checkpoint detect it as they do for one appliance.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use super::Error;
use super::checkpoints::Checkpoints;
use super::log::{Head, Sink};
use super::merkle::{Frontier, Hash, Nodes};
use super::tiles::path::{HEIGHT, WIDTH, hashes_at, locate};
use super::tiles::{Cache, Edge, MAX_ENTRY, Tile, bundle_bytes, hashes, span_root};
use crate::store::postgres::{LogHead, Postgres};

fn storage(e: crate::store::Error) -> Error {
    Error::Storage(e.to_string())
}

fn to_head(stored: &LogHead) -> Result<Head, Error> {
    let root = <[u8; 32]>::try_from(stored.root.as_slice())
        .map_err(|_| Error::Corrupt("the stored root is not 32 bytes".into()))?;
    Ok(Head {
        size: stored.size,
        root,
    })
}

/// The log in PostgreSQL, as one appliance sees it.
pub struct SharedLog {
    db: Postgres,
    /// The newest head this appliance has read or committed.
    head: RwLock<Head>,
    /// Full tiles and bundles read lately.
    cache: Mutex<Cache>,
    /// The checkpoints this appliance signed or served, on its own disk (none for a one-off
    /// reader, such as `sshsign-server audit verify`).
    witnessed: Option<Checkpoints>,
    /// What the sequencer found not to match, once it has: the log then stops as when the full
    /// check finds a mismatch.
    tampered: Mutex<Option<String>>,
}

impl std::fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLog")
            .field("head", &self.head())
            .finish_non_exhaustive()
    }
}

/// The right edge's tiles, read in the sequencer's transaction, as [`Nodes`].
struct EdgeTiles {
    size: u64,
    rows: Vec<Vec<u8>>,
}

impl Nodes for EdgeTiles {
    type Error = Error;

    fn node(&self, level: u32, index: u64) -> Result<Hash, Error> {
        let (tile, span) = locate(self.size, level, index).ok_or_else(|| {
            Error::Corrupt(format!("subtree ({level}, {index}) is past the head"))
        })?;
        let bytes = self
            .rows
            .get(level as usize / HEIGHT as usize)
            .ok_or_else(|| Error::Corrupt(format!("{} is missing", tile.path())))?;
        span_root(bytes, span, tile)
    }
}

/// The rightmost tile of each level of a tree of `size`, as (level, index, width); a level
/// whose hashes fill whole tiles has none.
fn edge_tiles(size: u64) -> Vec<(u32, u64, u64)> {
    (0..)
        .map_while(|level| {
            let count = hashes_at(size, level);
            (count > 0).then_some((level, count / WIDTH, count % WIDTH))
        })
        .collect()
}

impl SharedLog {
    /// The log in `db`, with this appliance's witnessed checkpoints under `local` (its own
    /// audit directory). At most `cache_bytes` of tiles stay in memory.
    pub fn open(db: Postgres, local: Option<&Path>, cache_bytes: usize) -> Result<Self, Error> {
        let witnessed = match local {
            Some(local) => {
                std::fs::create_dir_all(local)
                    .map_err(|e| Error::Storage(format!("creating {}: {e}", local.display())))?;
                Some(Checkpoints::open(local)?)
            }
            None => None,
        };
        let head = to_head(&db.log_head().map_err(storage)?)?;
        Ok(SharedLog {
            db,
            head: RwLock::new(head),
            cache: Mutex::new(Cache::new(cache_bytes)),
            witnessed,
            tampered: Mutex::new(None),
        })
    }

    /// What the sequencer found not to match the head, if it did.
    pub fn tampered(&self) -> Option<String> {
        self.tampered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Remembers a mismatch the sequencer found, and returns it as the error that aborts.
    fn found_tampered(&self, problem: String) -> crate::store::Error {
        self.tampered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(problem.clone());
        crate::store::Error::Database(Error::Tampered(problem).to_string())
    }

    /// The newest head this appliance has seen.
    pub fn head(&self) -> Head {
        *self.head.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the committed head. A head smaller than one this appliance saw committed before
    /// the read began means the database went back in time: refused.
    pub fn refresh(&self) -> Result<Head, Error> {
        // Only what was seen before the read counts: a batch committed while the read is under
        // way may or may not be in what it returns.
        let before = self.head();
        let now = to_head(&self.db.log_head().map_err(storage)?)?;
        if now.size < before.size {
            return Err(Error::Tampered(format!(
                "the database's log holds {} entries, but this appliance saw {}",
                now.size, before.size
            )));
        }
        Ok(self.advance(now))
    }

    /// Moves the head this appliance has seen on to `now`, never back (reads and commits that
    /// overlap end in either order); returns the newest.
    fn advance(&self, now: Head) -> Head {
        let mut head = self.head.write().unwrap_or_else(|p| p.into_inner());
        if now.size > head.size {
            *head = now;
        }
        *head
    }

    /// Bytes of tiles cached, and the budget.
    pub fn cache_use(&self) -> (usize, usize) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).usage()
    }

    fn cached(&self, tile: Tile) -> Option<Arc<Vec<u8>>> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tile)
    }

    fn cache(&self, tile: Tile, bytes: Arc<Vec<u8>>) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(tile, bytes);
    }

    /// Tile `tile` at its width, if the committed tree holds that many items in it. A tile at
    /// a given width never changes, so partial ones are cached too (by width: proofs against
    /// the latest checkpoint read the same ones until the log grows).
    pub fn read(&self, tile: Tile) -> Result<Option<Arc<Vec<u8>>>, Error> {
        if let Some(bytes) = tile.is_partial().then(|| self.cached(tile)).flatten() {
            return Ok(Some(bytes));
        }
        let full = tile.full();
        let width = usize::try_from(tile.width()).unwrap_or(usize::MAX);
        if let Some(bytes) = self.cached(full) {
            return Ok(Some(match tile {
                _ if !tile.is_partial() => bytes,
                Tile::Hashes { .. } => Arc::new(
                    bytes
                        .get(..width * 32)
                        .ok_or_else(|| Error::Corrupt(format!("{} is short", full.path())))?
                        .to_vec(),
                ),
                Tile::Entries { .. } => Arc::new(bundle_bytes(
                    super::tiles::bundle_entries(&bytes)?
                        .into_iter()
                        .take(width),
                )),
            }));
        }
        let read = self.load(tile)?;
        if let Some(bytes) = read.as_ref().filter(|_| tile.is_partial()) {
            self.cache(tile, Arc::clone(bytes));
        }
        Ok(read)
    }

    /// Tile `tile` from the database itself, whatever is cached; a full one read is cached.
    fn load(&self, tile: Tile) -> Result<Option<Arc<Vec<u8>>>, Error> {
        let full = tile.full();
        let width = usize::try_from(tile.width()).unwrap_or(usize::MAX);
        let bytes = match tile {
            Tile::Hashes { level, index, .. } => {
                let Some((_, _, stored)) =
                    self.db.log_tiles(&[(level, index)]).map_err(storage)?.pop()
                else {
                    return Ok(None);
                };
                if stored.len() % 32 != 0 || stored.len() > WIDTH as usize * 32 {
                    return Err(Error::Corrupt(format!("{} is malformed", full.path())));
                }
                if stored.len() == WIDTH as usize * 32 {
                    self.cache(full, Arc::new(stored.clone()));
                }
                match stored.get(..width * 32) {
                    Some(prefix) => prefix.to_vec(),
                    None => return Ok(None),
                }
            }
            Tile::Entries { index, width } => {
                let first = index * WIDTH;
                let entries = self.db.log_entries(first, first + width).map_err(storage)?;
                if (entries.len() as u64) < width {
                    return Ok(None);
                }
                let bytes = bundle_bytes(entries.iter().map(|(_, e)| e.as_slice()));
                if width == WIDTH {
                    self.cache(full, Arc::new(bytes.clone()));
                }
                bytes
            }
        };
        Ok(Some(Arc::new(bytes)))
    }

    /// Entry `index`, if committed.
    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.entries(index, 1)?.pop().map(|(_, entry)| entry))
    }

    /// Entries from `from` on, at most `limit`: whole bundles through the cache.
    pub fn entries(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let mut found = Vec::new();
        let mut next = from;
        while found.len() < limit {
            let bundle = next / WIDTH;
            let full = Tile::Entries {
                index: bundle,
                width: WIDTH,
            };
            let batch: Vec<(u64, Vec<u8>)> = match self.cached(full) {
                Some(bytes) => super::tiles::bundle_entries(&bytes)?
                    .into_iter()
                    .enumerate()
                    .map(|(offset, e)| (bundle * WIDTH + offset as u64, e.to_vec()))
                    .collect(),
                None => {
                    let rows = self
                        .db
                        .log_entries(bundle * WIDTH, (bundle + 1) * WIDTH)
                        .map_err(storage)?;
                    // Rows run on from the bundle's first index: a gap is an entry deleted.
                    if let Some((offset, (index, _))) = rows
                        .iter()
                        .enumerate()
                        .find(|(offset, (index, _))| *index != bundle * WIDTH + *offset as u64)
                    {
                        return Err(Error::Tampered(format!(
                            "entry {} is missing (entry {index} follows)",
                            bundle * WIDTH + offset as u64
                        )));
                    }
                    if rows.len() as u64 == WIDTH {
                        let bytes = bundle_bytes(rows.iter().map(|(_, e)| e.as_slice()));
                        self.cache(full, Arc::new(bytes));
                    }
                    rows
                }
            };
            let whole = batch.len() as u64 == WIDTH;
            found.extend(
                batch
                    .into_iter()
                    .filter(|(index, _)| *index >= next)
                    .take(limit - found.len()),
            );
            if !whole {
                break;
            }
            next = (bundle + 1) * WIDTH;
        }
        Ok(found)
    }

    /// The latest checkpoint kept in the database.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, Error> {
        self.db.log_latest_checkpoint().map_err(storage)
    }

    pub fn checkpoint_at(&self, size: u64) -> Result<Option<String>, Error> {
        self.db.log_checkpoint_at(size).map_err(storage)
    }

    /// Keeps a checkpoint for every appliance, and as witnessed here; returns the note kept at
    /// that size (another appliance's, if it kept one first: the same signature, perhaps with
    /// cosignatures added).
    pub fn keep_checkpoint(&self, size: u64, note: &str) -> Result<String, Error> {
        let kept = self.db.log_keep_checkpoint(size, note).map_err(storage)?;
        self.witness(size, &kept)?;
        Ok(kept)
    }

    /// Adds the cosignature line `line` by the cosigner `vkey` to the checkpoint at `size`,
    /// unless it carries one by that key already; returns the note as kept.
    pub fn add_cosignature(&self, size: u64, vkey: &str, line: &str) -> Result<String, Error> {
        // Each try loses only to another appliance's line added in between.
        for _ in 0..64 {
            let note = self.checkpoint_at(size)?.ok_or(Error::NoCheckpoint(size))?;
            if super::note::has_cosignature(&note, vkey)? {
                return Ok(note);
            }
            let cosigned = format!("{note}{line}");
            if self
                .db
                .log_replace_checkpoint(size, &note, &cosigned)
                .map_err(storage)?
            {
                return Ok(cosigned);
            }
        }
        Err(Error::Storage(format!(
            "the checkpoint of {size} kept changing while this appliance cosigned it"
        )))
    }

    /// Keeps `note` at `size` on this appliance's disk, unless it has seen as large a one.
    pub fn witness(&self, size: u64, note: &str) -> Result<(), Error> {
        let Some(witnessed) = &self.witnessed else {
            return Ok(());
        };
        if witnessed.latest()?.is_none_or(|(latest, _)| latest < size) {
            witnessed.append(size, note)?;
        }
        Ok(())
    }

    /// The latest checkpoint this appliance signed or served.
    pub fn witnessed(&self) -> Result<Option<(u64, String)>, Error> {
        match &self.witnessed {
            Some(witnessed) => witnessed.latest(),
            None => Ok(None),
        }
    }

    /// The sequencer: integrates `entries` after whatever every appliance appended, in one
    /// transaction holding the head's row lock.
    fn integrate(&self, entries: &[Vec<u8>]) -> Result<(u64, Head), Error> {
        if let Some(long) = entries.iter().find(|e| e.len() > MAX_ENTRY) {
            return Err(Error::Unavailable(format!(
                "an audit entry of {} bytes (at most {MAX_ENTRY})",
                long.len()
            )));
        }
        let done = self.db.log_sequence(|tx| {
            let stored = tx.lock_head()?;
            let abort = |e: Error| crate::store::Error::Database(e.to_string());
            let head = to_head(&stored).map_err(abort)?;
            let edge = edge_tiles(head.size);
            let wanted: Vec<(u32, u64)> = edge
                .iter()
                .filter(|(_, _, width)| *width > 0)
                .map(|&(level, index, _)| (level, index))
                .collect();
            let found = tx.tiles(&wanted)?;
            let mut rows = Vec::with_capacity(edge.len());
            for (level, index, width) in edge {
                let bytes = match found.iter().find(|t| t.0 == level && t.1 == index) {
                    _ if width == 0 => Vec::new(),
                    Some((_, _, bytes)) if bytes.len() as u64 == width * 32 => bytes.clone(),
                    _ => {
                        return Err(self.found_tampered(format!(
                            "the hash tile ({level}, {index}) on the right edge does not hold \
                             {width} hashes"
                        )));
                    }
                };
                rows.push(bytes);
            }
            let frontier = Frontier::load(
                &EdgeTiles {
                    size: head.size,
                    rows: rows.clone(),
                },
                head.size,
            )
            .map_err(abort)?;
            if frontier.root() != head.root {
                return Err(self.found_tampered(format!(
                    "the right edge does not hash to the head at size {}",
                    head.size
                )));
            }
            let mut edge = Edge::from_rows(frontier, rows.iter().map(|r| hashes(r)).collect());
            let completed = edge.extend(entries);
            let mut tiles: Vec<(u32, u64, Vec<u8>)> = completed
                .into_iter()
                .filter_map(|(tile, bytes)| match tile {
                    Tile::Hashes { level, index, .. } => Some((level, index, bytes)),
                    Tile::Entries { .. } => None,
                })
                .collect();
            let now = edge.head();
            for (level, row) in edge.rows().iter().enumerate() {
                if !row.is_empty() {
                    let level = level as u32;
                    tiles.push((level, hashes_at(now.size, level) / WIDTH, row.concat()));
                }
            }
            tx.add_entries(head.size, entries)?;
            tx.put_tiles(&tiles)?;
            tx.set_head(&LogHead {
                size: now.size,
                root: now.root.to_vec(),
            })?;
            Ok((head.size, now))
        });
        let (first, now) = done.map_err(|e| match e {
            crate::store::Error::Database(reason) => Error::Unavailable(reason),
            other => storage(other),
        })?;
        self.advance(now);
        Ok((first, now))
    }
}

impl Sink for SharedLog {
    fn append(&self, entries: &[Vec<u8>]) -> Result<(u64, Head), String> {
        self.integrate(entries).map_err(|e| e.to_string())
    }
}

impl SharedLog {
    /// A perfect subtree of `2^level` leaves, in the tree this appliance last saw (read again
    /// when that tree does not hold it yet), from the tiles `read` gives.
    fn node_from(
        &self,
        level: u32,
        index: u64,
        read: impl FnOnce(Tile) -> Result<Option<Arc<Vec<u8>>>, Error>,
    ) -> Result<Hash, Error> {
        let located = match locate(self.head().size, level, index) {
            Some(found) => found,
            None => locate(self.refresh()?.size, level, index).ok_or_else(|| {
                Error::Corrupt(format!("subtree ({level}, {index}) is not in the log"))
            })?,
        };
        let (tile, span) = located;
        let bytes =
            read(tile)?.ok_or_else(|| Error::Corrupt(format!("{} is missing", tile.path())))?;
        span_root(&bytes, span, tile)
    }

    /// The tree's nodes as the database holds them now, past this appliance's cache: what the
    /// witness's checks read, so that tiles cached before cannot hide a tree rewritten since.
    pub fn fresh(&self) -> Fresh<'_> {
        Fresh {
            log: self,
            read: Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl Nodes for SharedLog {
    type Error = Error;

    fn node(&self, level: u32, index: u64) -> Result<Hash, Error> {
        self.node_from(level, index, |tile| self.read(tile))
    }
}

/// [`SharedLog::fresh`]: each tile read from the database once per check.
pub struct Fresh<'a> {
    log: &'a SharedLog,
    read: Mutex<std::collections::HashMap<Tile, Arc<Vec<u8>>>>,
}

impl Nodes for Fresh<'_> {
    type Error = Error;

    fn node(&self, level: u32, index: u64) -> Result<Hash, Error> {
        self.log.node_from(level, index, |tile| {
            let seen = self
                .read
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&tile)
                .cloned();
            if let Some(bytes) = seen {
                return Ok(Some(bytes));
            }
            let loaded = self.log.load(tile)?;
            if let Some(bytes) = &loaded {
                self.read
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(tile, Arc::clone(bytes));
            }
            Ok(loaded)
        })
    }
}

#[cfg(test)]
mod tests;
