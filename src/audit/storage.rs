//! Where the log lives: tile files on this appliance's disk ([`TileStore`] and
//! [`Checkpoints`]), or PostgreSQL shared by several appliances ([`SharedLog`]). The log above
//! reads and proves through [`LogStore`] alike; the writer appends through its [`Sink`].

use std::path::Path;
use std::sync::Arc;

use super::Error;
use super::checkpoints::Checkpoints;
use super::log::{Head, Sink};
use super::merkle::{Hash, Nodes};
use super::shared::SharedLog;
use super::tiles::{Tile, TileStore};

/// The log's tiles, entries and checkpoints.
pub enum LogStore {
    /// On this appliance's disk, under one directory.
    Files {
        tiles: Arc<TileStore>,
        checkpoints: Checkpoints,
    },
    /// In the database every appliance shares.
    Shared(Arc<SharedLog>),
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogStore::Files { tiles, .. } => tiles.fmt(f),
            LogStore::Shared(log) => log.fmt(f),
        }
    }
}

impl LogStore {
    /// The files under `root` (made if missing), over `tiles` opened there.
    pub fn files(root: &Path, tiles: Arc<TileStore>) -> Result<Self, Error> {
        Ok(LogStore::Files {
            tiles,
            checkpoints: Checkpoints::open(root)?,
        })
    }

    /// What the writer appends through.
    pub fn sink(&self) -> Arc<dyn Sink> {
        match self {
            LogStore::Files { tiles, .. } => Arc::clone(tiles) as Arc<dyn Sink>,
            LogStore::Shared(log) => Arc::clone(log) as Arc<dyn Sink>,
        }
    }

    /// The durable head as this appliance last saw it.
    pub fn head(&self) -> Head {
        match self {
            LogStore::Files { tiles, .. } => tiles.head(),
            LogStore::Shared(log) => log.head(),
        }
    }

    /// The durable head, read again where other appliances append too.
    pub fn refresh(&self) -> Result<Head, Error> {
        match self {
            LogStore::Files { tiles, .. } => Ok(tiles.head()),
            LogStore::Shared(log) => log.refresh(),
        }
    }

    /// A tile's bytes at its width, if the committed tree holds it.
    pub fn read(&self, tile: Tile) -> Result<Option<Arc<Vec<u8>>>, Error> {
        match self {
            LogStore::Files { tiles, .. } => tiles.read(tile),
            LogStore::Shared(log) => log.read(tile),
        }
    }

    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, Error> {
        match self {
            LogStore::Files { tiles, .. } => tiles.entry(index),
            LogStore::Shared(log) => log.entry(index),
        }
    }

    /// Entries from `from` on, at most `limit`, with their indexes.
    pub fn entries(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        match self {
            LogStore::Files { tiles, .. } => tiles.entries(from, limit),
            LogStore::Shared(log) => log.entries(from, limit),
        }
    }

    /// Bytes of tiles cached in memory, and the budget.
    pub fn cache_use(&self) -> (usize, usize) {
        match self {
            LogStore::Files { tiles, .. } => tiles.cache_use(),
            LogStore::Shared(log) => log.cache_use(),
        }
    }

    /// Makes the tiles durable past the write-ahead file (files; the database's commits are).
    pub fn sync_now(&self) -> Result<(), Error> {
        match self {
            LogStore::Files { tiles, .. } => tiles.sync_now(),
            LogStore::Shared(_) => Ok(()),
        }
    }

    /// The latest checkpoint kept, as `(size, note)`.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, Error> {
        match self {
            LogStore::Files { checkpoints, .. } => checkpoints.latest(),
            LogStore::Shared(log) => log.latest_checkpoint(),
        }
    }

    /// The checkpoint signed at `size`.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<String>, Error> {
        match self {
            LogStore::Files { checkpoints, .. } => checkpoints.at(size),
            LogStore::Shared(log) => log.checkpoint_at(size),
        }
    }

    /// The latest checkpoint as served at `checkpoint`.
    pub fn latest_note(&self) -> Result<Option<String>, Error> {
        match self {
            LogStore::Files { checkpoints, .. } => checkpoints.latest_note(),
            LogStore::Shared(log) => Ok(log.latest_checkpoint()?.map(|(_, note)| note)),
        }
    }

    /// Keeps a checkpoint signed at `size`; returns the note kept there (in a shared log,
    /// another appliance's of the same size if it came first).
    pub fn keep_checkpoint(&self, size: u64, note: &str) -> Result<String, Error> {
        match self {
            LogStore::Files { checkpoints, .. } => {
                checkpoints.append(size, note)?;
                Ok(note.to_owned())
            }
            LogStore::Shared(log) => log.keep_checkpoint(size, note),
        }
    }

    /// Adds the cosignature line `line` by the cosigner `vkey` to the checkpoint at `size`
    /// (once); returns the note as kept. Only a log several appliances share is cosigned.
    pub fn add_cosignature(&self, size: u64, vkey: &str, line: &str) -> Result<String, Error> {
        match self {
            LogStore::Files { .. } => Err(Error::Storage(
                "only a log several appliances share is cosigned".to_owned(),
            )),
            LogStore::Shared(log) => log.add_cosignature(size, vkey, line),
        }
    }

    /// The root of the tree's first `size` entries, as the log is kept now: a shared log's read
    /// from the database itself, past this appliance's cache (see [`SharedLog::fresh`]).
    pub fn root_at(&self, size: u64) -> Result<Hash, Error> {
        match self {
            LogStore::Files { tiles, .. } => super::merkle::subtree_hash(&**tiles, 0, size),
            LogStore::Shared(log) => super::merkle::subtree_hash(&log.fresh(), 0, size),
        }
    }

    /// What appending found not to match the log's head, if it did (a shared log's sequencer
    /// reads the right edge from the database at every batch).
    pub fn tampered(&self) -> Option<String> {
        match self {
            LogStore::Files { .. } => None,
            LogStore::Shared(log) => log.tampered(),
        }
    }

    /// The latest checkpoint this appliance saw of a log others write too, kept on its own
    /// disk; `None` for a log only this appliance writes.
    pub fn witnessed(&self) -> Result<Option<(u64, String)>, Error> {
        match self {
            LogStore::Files { .. } => Ok(None),
            LogStore::Shared(log) => log.witnessed(),
        }
    }

    /// Notes that this appliance saw `note` at `size` (a shared log's witness).
    pub fn witness(&self, size: u64, note: &str) -> Result<(), Error> {
        match self {
            LogStore::Files { .. } => Ok(()),
            LogStore::Shared(log) => log.witness(size, note),
        }
    }
}

impl Nodes for LogStore {
    type Error = Error;

    fn node(&self, level: u32, index: u64) -> Result<Hash, Error> {
        match self {
            LogStore::Files { tiles, .. } => tiles.node(level, index),
            LogStore::Shared(log) => log.node(level, index),
        }
    }
}
