//! The log as versions before the tiles kept it, in sled: read once, to move it into tiles
//! ([`super::migrate`]). Entries and the perfect-subtree hashes they complete lived in one sled
//! tree (`audit`), `e ‖ index` → entry bytes and `n ‖ level ‖ index` → hash; signed
//! checkpoints in `audit_checkpoints`, by tree size.

use sled::Tree;

use super::Error;

const TREE: &str = "audit";
const CHECKPOINTS: &str = "audit_checkpoints";

fn entry_key(index: u64) -> [u8; 9] {
    let mut key = [b'e'; 9];
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

fn node_key(level: u32, index: u64) -> [u8; 10] {
    let mut key = [b'n'; 10];
    key[1] = u8::try_from(level).unwrap_or(u8::MAX);
    key[2..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The sled tree holding entries and hashes.
#[derive(Debug, Clone)]
pub struct LogTree {
    db: sled::Db,
    tree: Tree,
}

impl LogTree {
    pub fn open(db: &sled::Db) -> Result<Self, Error> {
        Ok(LogTree {
            db: db.clone(),
            tree: db.open_tree(TREE).map_err(storage)?,
        })
    }

    /// How many entries the log holds.
    pub fn size(&self) -> Result<u64, Error> {
        let last = self
            .tree
            .scan_prefix(b"e")
            .next_back()
            .transpose()
            .map_err(storage)?;
        Ok(match last {
            Some((key, _)) => {
                u64::from_be_bytes(key[1..9].try_into().map_err(|_| corrupt("entry key"))?) + 1
            }
            None => 0,
        })
    }

    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .tree
            .get(entry_key(index))
            .map_err(storage)?
            .map(|v| v.to_vec()))
    }

    /// Entries from `from` on, at most `limit`, with their indexes.
    pub fn entries(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        self.tree
            .range(entry_key(from)..entry_key(u64::MAX))
            .take(limit)
            .map(|item| {
                let (key, value) = item.map_err(storage)?;
                let index =
                    u64::from_be_bytes(key[1..9].try_into().map_err(|_| corrupt("entry key"))?);
                Ok((index, value.to_vec()))
            })
            .collect()
    }
}

impl LogTree {
    /// The signed checkpoints, by tree size, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<(u64, String)>, Error> {
        self.checkpoint_tree()?
            .iter()
            .map(|item| {
                let (size, note) = item.map_err(storage)?;
                let size = u64::from_be_bytes(
                    size.as_ref()
                        .try_into()
                        .map_err(|_| corrupt("checkpoint key"))?,
                );
                Ok((size, String::from_utf8_lossy(&note).into_owned()))
            })
            .collect()
    }

    fn checkpoint_tree(&self) -> Result<Tree, Error> {
        self.db.open_tree(CHECKPOINTS).map_err(storage)
    }

    /// Appends entries and the subtree hashes they complete, and a checkpoint, as versions
    /// before the tiles did; kept so that tests make such a log to move.
    pub fn write(
        &self,
        first: u64,
        entries: &[Vec<u8>],
        frontier: &mut super::merkle::Frontier,
    ) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        for (offset, entry) in entries.iter().enumerate() {
            batch.insert(&entry_key(first + offset as u64)[..], entry.as_slice());
            frontier.push(super::merkle::leaf_hash(entry), |level, index, hash| {
                batch.insert(&node_key(level, index)[..], &hash[..]);
            });
        }
        self.tree.apply_batch(batch).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    /// Stores a signed checkpoint as versions before the tiles did (see [`Self::write`]).
    pub fn write_checkpoint(&self, size: u64, note: &str) -> Result<(), Error> {
        self.checkpoint_tree()?
            .insert(size.to_be_bytes(), note.as_bytes())
            .map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    /// Drops the old trees, once their log lives in tiles.
    pub fn drop_trees(&self) -> Result<(), Error> {
        self.db.drop_tree(TREE).map_err(storage)?;
        self.db.drop_tree(CHECKPOINTS).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }
}

fn storage(e: sled::Error) -> Error {
    Error::Storage(e.to_string())
}

fn corrupt(what: &'static str) -> Error {
    Error::Corrupt(what.to_owned())
}
