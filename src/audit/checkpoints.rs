//! Signed checkpoints on disk, next to the tiles: `checkpoint`, the latest (where the
//! specification puts it), and every one ever signed, for proofs against a size a client saved:
//! `checkpoints.notes` (each note after its size and length, big-endian `u64` and `u32`) and
//! `checkpoints.index` (16 bytes per note: its size and offset), both append-only and sorted by
//! size, so a lookup is a binary search on disk and nothing per checkpoint stays in memory.
//!
//! An append writes the note, syncs, then the index entry, syncs, then the latest. At open, an
//! index entry a crash cut short or that points past the notes is dropped, and notes past the
//! last indexed one are cut off.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Error;

const LATEST: &str = "checkpoint";
const NOTES: &str = "checkpoints.notes";
const INDEX: &str = "checkpoints.index";
/// The longest note kept (a checkpoint is a few hundred bytes).
const MAX_NOTE: u32 = 64 * 1024;

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{what} {}: {e}", path.display()))
}

/// The checkpoints under one directory.
#[derive(Debug)]
pub struct Checkpoints {
    root: PathBuf,
    files: Mutex<(File, File)>,
}

impl Checkpoints {
    pub fn open(root: &Path) -> Result<Self, Error> {
        let open = |name: &str| {
            let path = root.join(name);
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)
                .map_err(|e| io("opening", &path, e))
        };
        let (notes, index) = (open(NOTES)?, open(INDEX)?);
        let checkpoints = Checkpoints {
            root: root.to_owned(),
            files: Mutex::new((notes, index)),
        };
        checkpoints.repair()?;
        Ok(checkpoints)
    }

    /// Drops what a crash left half-written.
    fn repair(&self) -> Result<(), Error> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let (notes, index) = &*files;
        let index_path = self.root.join(INDEX);
        let notes_path = self.root.join(NOTES);
        let notes_len = notes
            .metadata()
            .map_err(|e| io("reading", &notes_path, e))?
            .len();
        let mut count = index
            .metadata()
            .map_err(|e| io("reading", &index_path, e))?
            .len()
            / 16;
        let mut end = 0;
        while count > 0 {
            let (_, offset) = read_index(index, count - 1, &index_path)?;
            match read_note_at(notes, offset, notes_len, &notes_path) {
                Ok((_, note)) => {
                    end = offset + 12 + note.len() as u64;
                    break;
                }
                Err(_) => count -= 1,
            }
        }
        index
            .set_len(count * 16)
            .and_then(|()| index.sync_data())
            .map_err(|e| io("repairing", &index_path, e))?;
        notes
            .set_len(end)
            .and_then(|()| notes.sync_data())
            .map_err(|e| io("repairing", &notes_path, e))?;
        Ok(())
    }

    /// How many are kept.
    pub fn count(&self) -> Result<u64, Error> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.root.join(INDEX);
        Ok(files
            .1
            .metadata()
            .map_err(|e| io("reading", &path, e))?
            .len()
            / 16)
    }

    /// The latest, as `(size, note)`.
    pub fn latest(&self) -> Result<Option<(u64, String)>, Error> {
        let count = self.count()?;
        if count == 0 {
            return Ok(None);
        }
        self.nth(count - 1).map(Some)
    }

    fn nth(&self, n: u64) -> Result<(u64, String), Error> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let (notes, index) = &*files;
        let notes_path = self.root.join(NOTES);
        let (size, offset) = read_index(index, n, &self.root.join(INDEX))?;
        let notes_len = notes
            .metadata()
            .map_err(|e| io("reading", &notes_path, e))?
            .len();
        let (stored, note) = read_note_at(notes, offset, notes_len, &notes_path)?;
        if stored != size {
            return Err(Error::Corrupt(format!(
                "checkpoint {n} indexed at size {size} holds size {stored}"
            )));
        }
        Ok((size, note))
    }

    /// The checkpoint signed at `size`, if one was.
    pub fn at(&self, size: u64) -> Result<Option<String>, Error> {
        let (mut low, mut high) = (0, self.count()?);
        let index_path = self.root.join(INDEX);
        while low < high {
            let middle = low + (high - low) / 2;
            let found = {
                let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
                read_index(&files.1, middle, &index_path)?.0
            };
            match found.cmp(&size) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return self.nth(middle).map(|(_, note)| Some(note)),
            }
        }
        Ok(None)
    }

    /// Keeps `note`, signed at `size` (larger than every size kept), durably; and makes it the
    /// latest.
    pub fn append(&self, size: u64, note: &str) -> Result<(), Error> {
        if let Some((latest, _)) = self.latest()?
            && latest >= size
        {
            return Err(Error::Storage(format!(
                "a checkpoint at {size} after one at {latest}"
            )));
        }
        let length = u32::try_from(note.len())
            .ok()
            .filter(|l| *l <= MAX_NOTE)
            .ok_or_else(|| Error::Storage("a checkpoint past 64 KiB".into()))?;
        {
            let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
            let (notes, index) = &mut *files;
            let notes_path = self.root.join(NOTES);
            let offset = notes
                .seek(SeekFrom::End(0))
                .map_err(|e| io("seeking", &notes_path, e))?;
            let mut record = Vec::with_capacity(12 + note.len());
            record.extend_from_slice(&size.to_be_bytes());
            record.extend_from_slice(&length.to_be_bytes());
            record.extend_from_slice(note.as_bytes());
            notes
                .write_all(&record)
                .and_then(|()| notes.sync_data())
                .map_err(|e| io("writing", &notes_path, e))?;
            let mut entry = [0u8; 16];
            entry[..8].copy_from_slice(&size.to_be_bytes());
            entry[8..].copy_from_slice(&offset.to_be_bytes());
            let index_path = self.root.join(INDEX);
            index
                .write_all(&entry)
                .and_then(|()| index.sync_data())
                .map_err(|e| io("writing", &index_path, e))?;
        }
        self.write_latest(note)
    }

    /// `checkpoint`, replaced atomically.
    fn write_latest(&self, note: &str) -> Result<(), Error> {
        let path = self.root.join(LATEST);
        let temporary = self.root.join(".checkpoint.tmp");
        let mut file = File::create(&temporary).map_err(|e| io("creating", &temporary, e))?;
        file.write_all(note.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| io("writing", &temporary, e))?;
        fs::rename(&temporary, &path).map_err(|e| io("renaming", &path, e))?;
        File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing", &self.root, e))
    }

    /// `checkpoint` as served: the latest note.
    pub fn latest_note(&self) -> Result<Option<String>, Error> {
        let path = self.root.join(LATEST);
        match fs::read_to_string(&path) {
            Ok(note) => Ok(Some(note)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &path, e)),
        }
    }
}

fn read_index(index: &File, n: u64, path: &Path) -> Result<(u64, u64), Error> {
    let mut entry = [0u8; 16];
    index
        .read_exact_at(&mut entry, n * 16)
        .map_err(|e| io("reading", path, e))?;
    let size = u64::from_be_bytes(entry[..8].try_into().unwrap_or_default());
    let offset = u64::from_be_bytes(entry[8..].try_into().unwrap_or_default());
    Ok((size, offset))
}

fn read_note_at(notes: &File, offset: u64, len: u64, path: &Path) -> Result<(u64, String), Error> {
    let short = || Error::Corrupt(format!("{} is cut short at {offset}", path.display()));
    if offset.checked_add(12).is_none_or(|end| end > len) {
        return Err(short());
    }
    let mut header = [0u8; 12];
    notes
        .read_exact_at(&mut header, offset)
        .map_err(|e| io("reading", path, e))?;
    let size = u64::from_be_bytes(header[..8].try_into().unwrap_or_default());
    let length = u32::from_be_bytes(header[8..].try_into().unwrap_or_default());
    if length > MAX_NOTE || offset + 12 + u64::from(length) > len {
        return Err(short());
    }
    let mut note = vec![0u8; length as usize];
    notes
        .read_exact_at(&mut note, offset + 12)
        .map_err(|e| io("reading", path, e))?;
    let note = String::from_utf8(note)
        .map_err(|_| Error::Corrupt(format!("a checkpoint in {} is not UTF-8", path.display())))?;
    Ok((size, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_found_by_size_and_survive_a_torn_append() {
        let dir = tempfile::tempdir().unwrap();
        let kept = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(kept.latest().unwrap(), None);
        for size in [1u64, 5, 9, 300] {
            kept.append(size, &format!("note at {size}\n")).unwrap();
        }
        assert!(kept.append(300, "again").is_err(), "sizes only grow");
        assert_eq!(kept.at(9).unwrap().as_deref(), Some("note at 9\n"));
        assert_eq!(kept.at(8).unwrap(), None);
        assert_eq!(
            kept.latest_note().unwrap().as_deref(),
            Some("note at 300\n")
        );
        drop(kept);

        // A crash after the note but before its index entry, and half an index entry.
        let mut notes = OpenOptions::new()
            .append(true)
            .open(dir.path().join(NOTES))
            .unwrap();
        notes
            .write_all(&[0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 40])
            .unwrap();
        let mut index = OpenOptions::new()
            .append(true)
            .open(dir.path().join(INDEX))
            .unwrap();
        index.write_all(&[0, 0, 0]).unwrap();
        let kept = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(kept.count().unwrap(), 4);
        assert_eq!(
            kept.latest().unwrap(),
            Some((300, "note at 300\n".to_owned()))
        );
        kept.append(400, "note at 400\n").unwrap();
        assert_eq!(kept.at(400).unwrap().as_deref(), Some("note at 400\n"));
        assert_eq!(kept.at(1).unwrap().as_deref(), Some("note at 1\n"));
    }
}
