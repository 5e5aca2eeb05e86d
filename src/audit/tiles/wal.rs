//! The write-ahead log in front of the tiles: a commit is one record appended to `wal` and one
//! `fdatasync`, so a durable append costs what a database's commit costs; the tiles written
//! since the last sync are made durable together later ([`super::TileStore`]), and then the
//! records they cover are dropped.
//!
//! A record is the index of its first entry (`u64`), the number of entries (`u32`) and the
//! payload's length (`u32`), all big-endian, then the payload (each entry after its `u16`
//! length, as in a bundle), then SHA-256 over all of that. A record cut short or whose hash does
//! not match is where a crash stopped an append that was never acknowledged: it and what follows
//! are cut off at open.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::super::Error;
use super::{bundle_bytes, bundle_entries};

const NAME: &str = "wal";
const HEADER: usize = 16;
const TRAILER: usize = 32;

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{what} {}: {e}", path.display()))
}

/// The log's write-ahead file.
#[derive(Debug)]
pub struct Wal {
    file: File,
    path: PathBuf,
    bytes: u64,
}

/// One commit's entries, from index `first` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub first: u64,
    pub entries: Vec<Vec<u8>>,
}

impl Wal {
    /// Opens `wal` under `root`; returns it and its intact records, after cutting off a torn
    /// tail.
    pub fn open(root: &Path) -> Result<(Wal, Vec<Record>), Error> {
        let path = root.join(NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("opening", &path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io("reading", &path, e))?;
        let mut records = Vec::new();
        let mut at = 0;
        while let Some((record, length)) = parse(&bytes[at..]) {
            records.push(record);
            at += length;
        }
        if at < bytes.len() {
            tracing::warn!(
                bytes = bytes.len() - at,
                "the audit log's write-ahead file ends in a torn record; it was never acknowledged and is dropped"
            );
            file.set_len(at as u64)
                .and_then(|()| file.sync_data())
                .map_err(|e| io("truncating", &path, e))?;
        }
        file.seek(SeekFrom::Start(at as u64))
            .map_err(|e| io("seeking", &path, e))?;
        let wal = Wal {
            file,
            path,
            bytes: at as u64,
        };
        Ok((wal, records))
    }

    /// Appends a record of `entries` from index `first` and makes it durable.
    pub fn append(&mut self, first: u64, entries: &[Vec<u8>]) -> Result<(), Error> {
        let record = encode(first, entries)?;
        let outcome = self
            .file
            .write_all(&record)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = outcome {
            // Whatever part reached the file is a torn record: cut it off now, or the next
            // record would follow garbage.
            let _ = self.file.set_len(self.bytes);
            let _ = self.file.seek(SeekFrom::Start(self.bytes));
            return Err(io("appending to", &self.path, e));
        }
        self.bytes += record.len() as u64;
        Ok(())
    }

    /// Drops every record, once the tiles hold them durably.
    pub fn clear(&mut self) -> Result<(), Error> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)).map(|_| ()))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io("clearing", &self.path, e))?;
        self.bytes = 0;
        Ok(())
    }

    /// Bytes it holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

fn encode(first: u64, entries: &[Vec<u8>]) -> Result<Vec<u8>, Error> {
    let payload = bundle_bytes(entries.iter().map(Vec::as_slice));
    let count = u32::try_from(entries.len())
        .map_err(|_| Error::Unavailable("too many entries in one commit".into()))?;
    let length = u32::try_from(payload.len())
        .map_err(|_| Error::Unavailable("a commit past 4 GiB".into()))?;
    let mut record = Vec::with_capacity(HEADER + payload.len() + TRAILER);
    record.extend_from_slice(&first.to_be_bytes());
    record.extend_from_slice(&count.to_be_bytes());
    record.extend_from_slice(&length.to_be_bytes());
    record.extend_from_slice(&payload);
    let hash = Sha256::digest(&record);
    record.extend_from_slice(&hash);
    Ok(record)
}

/// The record at the start of `bytes` and its length, if it is whole and intact.
fn parse(bytes: &[u8]) -> Option<(Record, usize)> {
    let header = bytes.get(..HEADER)?;
    let first = u64::from_be_bytes(header[..8].try_into().ok()?);
    let count = u32::from_be_bytes(header[8..12].try_into().ok()?);
    let length = usize::try_from(u32::from_be_bytes(header[12..16].try_into().ok()?)).ok()?;
    let end = HEADER.checked_add(length)?;
    let body = bytes.get(..end)?;
    let hash = bytes.get(end..end.checked_add(TRAILER)?)?;
    if Sha256::digest(body)[..] != hash[..] {
        return None;
    }
    let entries: Vec<Vec<u8>> = bundle_entries(&body[HEADER..])
        .ok()?
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    (entries.len() == count as usize).then_some((Record { first, entries }, end + TRAILER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_and_a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, records) = Wal::open(dir.path()).unwrap();
        assert!(records.is_empty());
        wal.append(0, &[b"a".to_vec(), b"bc".to_vec()]).unwrap();
        wal.append(2, &[b"d".to_vec()]).unwrap();
        let whole = wal.bytes();
        drop(wal);
        // A crash in the middle of a third append.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(NAME))
            .unwrap();
        file.write_all(&encode(3, &[b"e".to_vec()]).unwrap()[..20])
            .unwrap();
        let (mut wal, records) = Wal::open(dir.path()).unwrap();
        assert_eq!(
            records,
            [
                Record {
                    first: 0,
                    entries: vec![b"a".to_vec(), b"bc".to_vec()]
                },
                Record {
                    first: 2,
                    entries: vec![b"d".to_vec()]
                }
            ]
        );
        assert_eq!(wal.bytes(), whole);
        assert_eq!(
            std::fs::metadata(dir.path().join(NAME)).unwrap().len(),
            whole
        );
        wal.append(3, &[b"e".to_vec()]).unwrap();
        // A flipped bit is a torn record too.
        drop(wal);
        let mut bytes = std::fs::read(dir.path().join(NAME)).unwrap();
        let last = bytes.len() - 40;
        bytes[last] ^= 1;
        std::fs::write(dir.path().join(NAME), bytes).unwrap();
        let (mut wal, records) = Wal::open(dir.path()).unwrap();
        assert_eq!(records.len(), 2);
        wal.clear().unwrap();
        drop(wal);
        assert!(Wal::open(dir.path()).unwrap().1.is_empty());
    }
}
