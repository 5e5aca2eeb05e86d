//! Checking the audit log from its tiles (C2SP tlog-tiles) instead of over SSH: from the
//! appliance's `/audit/` over HTTP, or from a copy of that tree in a directory (a mirror, a
//! backup, what a witness keeps).
//!
//! Nothing served is trusted. The checkpoint must verify under the pinned key; the tiles must
//! hash to its root; the consistency and inclusion proofs are built from the tiles here and
//! checked against the signed roots with the same code that checks the appliance's own proofs,
//! so a tile that lies makes a proof that fails.

use std::collections::HashMap;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use super::{AuditorError, Memory, OnlineReport, accept, check_checkpoint, seen_size};
use crate::audit::merkle::{self, Hash, Nodes, ProofError};
use crate::audit::tiles::path::{self, Tile, WIDTH};
use crate::audit::tiles::{bundle_bytes, bundle_entries, span_root};
use crate::webhook::client::{self as http, Target};
use crate::webhook::ssrf::Policy;

/// The most a checkpoint may take.
const MAX_CHECKPOINT: usize = 16 * 1024;
/// The most a served entry bundle may take: served entries are a leaf hash and an action each.
const MAX_BUNDLE: usize = 1 << 20;
/// The most any entry bundle can take (256 entries of at most 65,535 bytes, each after its
/// length): the appliance's own directory holds whole entries.
const MAX_WHOLE_BUNDLE: usize = 256 * (2 + 65_535);
/// The most tiles one check fetches (a proof needs a few per level: a log of 2^64 entries has 8).
const MAX_TILES: usize = 256;

/// Where the tiles are: the URL of the log's root (`https://appliance.example/audit`), or a
/// directory that holds `checkpoint` and `tile/`.
#[derive(Debug, Clone)]
pub enum TileSource {
    Http(Target),
    Directory(PathBuf),
}

impl TileSource {
    /// An `http://` or `https://` URL, or else a directory.
    pub fn parse(text: &str) -> Result<Self, AuditorError> {
        if text.starts_with("http://") || text.starts_with("https://") {
            let mut target = Target::parse(text).map_err(|e| AuditorError::Tiles(e.to_string()))?;
            if target.path.contains('?') {
                return Err(AuditorError::Tiles(format!(
                    "{text}: the log's URL takes no query"
                )));
            }
            target.path = target.path.trim_end_matches('/').to_owned();
            Ok(TileSource::Http(target))
        } else {
            Ok(TileSource::Directory(PathBuf::from(text)))
        }
    }

    /// The file at `relative` (a path under the log's root), at most `limit` bytes.
    async fn get(&self, relative: &str, limit: usize) -> Result<Vec<u8>, AuditorError> {
        match self {
            TileSource::Http(base) => {
                let mut target = base.clone();
                target.path = format!("{}/{relative}", base.path);
                let failed = |why: String| AuditorError::Tiles(format!("GET {relative}: {why}"));
                let answer = http::get(&target, &Policy::anywhere(), limit)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                if answer.status != 200 {
                    return Err(failed(format!("HTTP {}", answer.status)));
                }
                if answer.truncated {
                    return Err(failed(format!("longer than {limit} bytes, or cut short")));
                }
                Ok(answer.body.to_vec())
            }
            TileSource::Directory(root) => {
                let file = root.join(relative);
                let failed =
                    |why: String| AuditorError::Tiles(format!("{}: {why}", file.display()));
                let length = tokio::fs::metadata(&file)
                    .await
                    .map_err(|e| failed(e.to_string()))?
                    .len();
                if length > limit as u64 {
                    return Err(failed(format!("longer than {limit} bytes")));
                }
                tokio::fs::read(&file)
                    .await
                    .map_err(|e| failed(e.to_string()))
            }
        }
    }

    /// The notes handing the log from one checkpoint key to the next (`handovers/N.note`, N from
    /// 2 on, up to the first missing), not yet checked.
    pub async fn handovers(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for generation in 2..super::MAX_HANDOVERS + 2 {
            match self
                .get(&format!("handovers/{generation}.note"), MAX_CHECKPOINT)
                .await
            {
                Ok(bytes) => notes.push(String::from_utf8_lossy(&bytes).into_owned()),
                Err(_) => break,
            }
        }
        notes
    }

    /// The latest checkpoint, as a signed note (not yet checked).
    pub async fn checkpoint(&self) -> Result<String, AuditorError> {
        let bytes = self.get("checkpoint", MAX_CHECKPOINT).await?;
        String::from_utf8(bytes)
            .map_err(|_| AuditorError::Tiles("the checkpoint is not UTF-8".to_owned()))
    }

    /// `tile`'s bytes; a hash tile must hold exactly its width of hashes. The appliance
    /// serves a partial tile at any width up to the log's; a directory holds each tile at one
    /// width only, so there the narrowest wider copy (or the full tile) stands in, cut to width.
    async fn tile(&self, tile: Tile) -> Result<Vec<u8>, AuditorError> {
        let (limit, exact) = match tile {
            Tile::Hashes { width, .. } => {
                let length = usize::try_from(width * 32).unwrap_or(usize::MAX);
                (length, Some(length))
            }
            Tile::Entries { .. } => match self {
                TileSource::Http(_) => (MAX_BUNDLE, None),
                TileSource::Directory(_) => (MAX_WHOLE_BUNDLE, None),
            },
        };
        let bytes = match self {
            TileSource::Directory(root) if !root.join(tile.path()).exists() => {
                let wider = wider_copy(root, tile).ok_or_else(|| {
                    AuditorError::Tiles(format!("{} is not in {}", tile.path(), root.display()))
                })?;
                let most = match tile {
                    Tile::Hashes { .. } => WIDTH as usize * 32,
                    Tile::Entries { .. } => MAX_WHOLE_BUNDLE,
                };
                let bytes = self.get(&wider.path(), most).await?;
                cut_to_width(&bytes, tile)?
            }
            _ => self.get(&tile.path(), limit).await?,
        };
        if exact.is_some_and(|length| bytes.len() != length) {
            return Err(AuditorError::Tiles(format!(
                "{} holds {} bytes, not {}",
                tile.path(),
                bytes.len(),
                limit
            )));
        }
        Ok(bytes)
    }
}

/// The narrowest copy of `tile` wider than it under `root`: a wider partial tile, or the full one.
fn wider_copy(root: &std::path::Path, tile: Tile) -> Option<Tile> {
    let full = tile.full();
    let partials = root.join(format!("{}.p", full.path()));
    let narrowest = std::fs::read_dir(partials)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|item| item.file_name().to_str()?.parse::<u64>().ok())
        .filter(|width| (tile.width()..WIDTH).contains(width))
        .min();
    let wider = match (narrowest, full) {
        (Some(width), Tile::Hashes { level, index, .. }) => Tile::Hashes {
            level,
            index,
            width,
        },
        (Some(width), Tile::Entries { index, .. }) => Tile::Entries { index, width },
        (None, full) => full,
    };
    root.join(wider.path()).exists().then_some(wider)
}

/// The first `tile.width()` hashes or entries of a wider copy's `bytes`.
fn cut_to_width(bytes: &[u8], tile: Tile) -> Result<Vec<u8>, AuditorError> {
    let width = usize::try_from(tile.width()).unwrap_or(usize::MAX);
    let short = || AuditorError::Tiles(format!("the copy of {} is short", tile.path()));
    match tile {
        Tile::Hashes { .. } => Ok(bytes.get(..width * 32).ok_or_else(short)?.to_vec()),
        Tile::Entries { .. } => {
            let entries = bundle_entries(bytes).map_err(|e| AuditorError::Tiles(e.to_string()))?;
            let kept = entries.get(..width).ok_or_else(short)?;
            Ok(bundle_bytes(kept.iter().copied()))
        }
    }
}

/// The tiles fetched so far of the tree of `size` entries.
struct Fetched {
    size: u64,
    tiles: HashMap<Tile, Vec<u8>>,
}

/// Why a computation over [`Fetched`] stopped.
#[derive(Debug)]
enum Stop {
    /// It needs this tile first.
    Needs(Tile),
    Proof(ProofError),
    Tiles(String),
}

impl From<ProofError> for Stop {
    fn from(e: ProofError) -> Self {
        Stop::Proof(e)
    }
}

impl Nodes for Fetched {
    type Error = Stop;

    fn node(&self, level: u32, index: u64) -> Result<Hash, Stop> {
        let (tile, span) = path::locate(self.size, level, index).ok_or(Stop::Proof(
            ProofError::IndexOutOfRange {
                index: index << level,
                size: self.size,
            },
        ))?;
        let bytes = self.tiles.get(&tile).ok_or(Stop::Needs(tile))?;
        span_root(bytes, span, tile).map_err(|e| Stop::Tiles(e.to_string()))
    }
}

/// The tree of one checkpoint, read from `source` a tile at a time as proofs need them.
struct TiledTree<'a> {
    source: &'a TileSource,
    fetched: Fetched,
}

impl<'a> TiledTree<'a> {
    fn new(source: &'a TileSource, size: u64) -> Self {
        TiledTree {
            source,
            fetched: Fetched {
                size,
                tiles: HashMap::new(),
            },
        }
    }

    /// Runs `compute` over the tiles, fetching each one it turns out to need.
    async fn with_tiles<T>(
        &mut self,
        compute: impl Fn(&Fetched) -> Result<T, Stop>,
    ) -> Result<T, AuditorError> {
        loop {
            match compute(&self.fetched) {
                Ok(value) => return Ok(value),
                Err(Stop::Needs(tile)) if self.fetched.tiles.len() < MAX_TILES => {
                    let bytes = self.source.tile(tile).await?;
                    self.fetched.tiles.insert(tile, bytes);
                }
                Err(Stop::Needs(_)) => {
                    return Err(AuditorError::Tiles(format!(
                        "a proof needs more than {MAX_TILES} tiles"
                    )));
                }
                Err(Stop::Proof(e)) => return Err(e.into()),
                Err(Stop::Tiles(why)) => return Err(AuditorError::Tiles(why)),
            }
        }
    }

    /// The root of the whole tree.
    async fn root(&mut self) -> Result<Hash, AuditorError> {
        let size = self.fetched.size;
        self.with_tiles(|tiles| merkle::subtree_hash(tiles, 0, size))
            .await
    }

    /// A consistency proof from `old` entries to the whole tree, as `audit-consistency`
    /// answers it, with `note` as its checkpoint.
    async fn consistency(&mut self, old: u64, note: &str) -> Result<Value, AuditorError> {
        let size = self.fetched.size;
        let proof = self
            .with_tiles(|tiles| merkle::consistency_proof(tiles, old, size))
            .await?;
        Ok(serde_json::json!({
            "checkpoint": note,
            "from": old,
            "to": size,
            "proof": encode(&proof),
        }))
    }

    /// Entry `index`'s leaf hash and its inclusion proof.
    async fn inclusion(&mut self, index: u64) -> Result<(Hash, Vec<Hash>), AuditorError> {
        let size = self.fetched.size;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size }.into());
        }
        let leaf = self.with_tiles(|tiles| tiles.node(0, index)).await?;
        let proof = self
            .with_tiles(|tiles| merkle::inclusion_proof(tiles, index, size))
            .await?;
        Ok((leaf, proof))
    }

    /// What is public of entry `index`, whose leaf hash is `leaf`, from its bundle: the
    /// appliance serves each entry as its public form (action and leaf hash); the appliance's
    /// own directory holds the entries themselves, whose public form is made here.
    async fn public_entry(&mut self, index: u64, leaf: &Hash) -> Result<Value, AuditorError> {
        let bundle = index / WIDTH;
        let tile = Tile::Entries {
            index: bundle,
            width: path::width_in(self.fetched.size, 0, bundle),
        };
        let bytes = self.source.tile(tile).await?;
        let entries = bundle_entries(&bytes).map_err(|e| AuditorError::Tiles(e.to_string()))?;
        let entry = entries
            .get((index % WIDTH) as usize)
            .ok_or_else(|| AuditorError::Tiles(format!("{} is short", tile.path())))?;
        let public = if merkle::leaf_hash(entry) == *leaf {
            crate::audit::public_entry(entry).map_err(|e| AuditorError::Tiles(e.to_string()))?
        } else {
            entry.to_vec()
        };
        let public: Value = serde_json::from_slice(&public).map_err(|_| {
            AuditorError::Tiles(format!("{} holds an entry that is not JSON", tile.path()))
        })?;
        if public["leaf_hash"].as_str() != Some(crate::hex::encode(leaf).as_str()) {
            return Err(AuditorError::Tiles(format!(
                "entry {index} in {} is not the leaf the tiles hold",
                tile.path()
            )));
        }
        Ok(public)
    }
}

fn encode(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|hash| BASE64.encode(hash)).collect()
}

/// Checks the log from its tiles: the checkpoint verifies under `pinned` (or the key remembered
/// for its origin), the tiles hash to its root, and it extends the checkpoint `memory` saw
/// before (a consistency proof built from the tiles); then, with `index`, that entry's leaf is
/// in it (an inclusion proof built from the tiles) and its public form matches the leaf. The
/// checkpoint is remembered only once all of that holds.
pub async fn check_tiles(
    memory: &Memory,
    pinned: Option<String>,
    cosigners: &[String],
    index: Option<u64>,
    source: &TileSource,
) -> Result<OnlineReport, AuditorError> {
    let note = source.checkpoint().await?;
    let origin = note.lines().next().unwrap_or_default().to_owned();
    let seen = memory.seen(&origin)?;
    let mut vkey = pinned
        .or_else(|| seen.as_ref().map(|seen| seen.verifier_key.clone()))
        .ok_or_else(|| AuditorError::NoKey {
            origin: origin.clone(),
        })?;
    if check_checkpoint(&note, &vkey).is_err() {
        // Signed by a later key, perhaps: follow the handovers from the one pinned.
        vkey = crate::audit::note::follow_handovers(&vkey, &source.handovers().await);
    }
    let checkpoint = check_checkpoint(&note, &vkey)?;
    let mut tree = TiledTree::new(source, checkpoint.size);
    if tree.root().await? != checkpoint.root {
        return Err(AuditorError::Tiles(format!(
            "the tiles do not hash to the root of the checkpoint of {} entries",
            checkpoint.size
        )));
    }
    let old_size = seen_size(seen.as_ref())?;
    let consistency = if old_size > 0 && checkpoint.size > old_size {
        Some(tree.consistency(old_size, &note).await?)
    } else {
        None
    };
    let mut report = accept(memory, seen.as_ref(), (note, vkey), cosigners, consistency)?;
    if let Some(index) = index {
        let (leaf, proof) = tree.inclusion(index).await?;
        let proof: Vec<Vec<u8>> = proof.iter().map(|hash| hash.to_vec()).collect();
        merkle::verify_inclusion(index, checkpoint.size, &leaf, &proof, &checkpoint.root)?;
        let public = tree.public_entry(index, &leaf).await?;
        report.index = Some(index.into());
        report.public_entry = Some(public);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_directory_answers_a_narrower_tile_from_a_wider_copy() {
        let dir = tempfile::tempdir().unwrap();
        let hashes: Vec<u8> = (0..5u8).flat_map(|n| [n; 32]).collect();
        let entries: Vec<Vec<u8>> = (0..5u8).map(|n| vec![b'e'; usize::from(n) + 1]).collect();
        for (relative, bytes) in [
            ("tile/0/000.p/5", hashes.clone()),
            (
                "tile/entries/000.p/5",
                bundle_bytes(entries.iter().map(Vec::as_slice)),
            ),
        ] {
            let path = dir.path().join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let source = TileSource::parse(dir.path().to_str().unwrap()).unwrap();
        let narrow = Tile::Hashes {
            level: 0,
            index: 0,
            width: 3,
        };
        assert_eq!(source.tile(narrow).await.unwrap(), hashes[..96]);
        let bundle = source
            .tile(Tile::Entries { index: 0, width: 2 })
            .await
            .unwrap();
        assert_eq!(
            bundle_entries(&bundle).unwrap(),
            [&entries[0][..], &entries[1][..]]
        );
        // Wider than any copy: not there.
        let wide = Tile::Hashes {
            level: 0,
            index: 0,
            width: 7,
        };
        assert!(matches!(
            source.tile(wide).await,
            Err(AuditorError::Tiles(_))
        ));
    }

    #[test]
    fn a_log_url_is_http_or_https_without_a_query() {
        let TileSource::Http(target) = TileSource::parse("https://log.example/audit/").unwrap()
        else {
            panic!("not a URL");
        };
        assert_eq!(target.path, "/audit");
        assert!(TileSource::parse("https://log.example/audit?x=1").is_err());
        assert!(matches!(
            TileSource::parse("/var/lib/sshsign/db.tlog").unwrap(),
            TileSource::Directory(_)
        ));
    }
}
