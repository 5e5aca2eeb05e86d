//! The audit log's tables (`migrations/postgres/0002_audit_log.sql`): the statements, and the
//! sequencer's transaction. The Merkle tree is [`crate::audit::shared`]'s business; this file
//! only moves rows.

use tokio_postgres::types::ToSql;

use super::{Conn, Postgres, block_on, database};
use crate::store::Result;

/// The tree head as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHead {
    pub size: u64,
    pub root: Vec<u8>,
}

fn to_u64(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| database(format!("the audit log's {what} is negative")))
}

fn to_i64(n: u64, what: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| database(format!("the audit log's {what} is out of range")))
}

impl Conn {
    fn log_head(&self, lock: bool) -> Result<LogHead> {
        let sql = if lock {
            "SELECT size, root FROM sshsign_audit_head FOR UPDATE"
        } else {
            "SELECT size, root FROM sshsign_audit_head"
        };
        let rows = self.query(sql, &[])?;
        let row = rows
            .first()
            .ok_or_else(|| database("the audit log's head row is missing"))?;
        Ok(LogHead {
            size: to_u64(row.get(0), "size")?,
            root: row.get(1),
        })
    }

    fn log_tiles(&self, wanted: &[(u32, u64)]) -> Result<Vec<(u32, u64, Vec<u8>)>> {
        let levels = wanted
            .iter()
            .map(|&(level, _)| i16::try_from(level).map_err(|_| database("a tile level")))
            .collect::<Result<Vec<i16>>>()?;
        let indexes = wanted
            .iter()
            .map(|&(_, index)| to_i64(index, "tile index"))
            .collect::<Result<Vec<i64>>>()?;
        let rows = self.query(
            "SELECT t.level, t.index, t.hashes FROM sshsign_audit_tiles t \
             JOIN unnest($1::smallint[], $2::bigint[]) AS w(level, index) \
             ON t.level = w.level AND t.index = w.index",
            &[&levels, &indexes],
        )?;
        rows.iter()
            .map(|row| {
                let level: i16 = row.get(0);
                let index: i64 = row.get(1);
                let level =
                    u32::try_from(level).map_err(|_| database("a tile level is negative"))?;
                Ok((level, to_u64(index, "tile index")?, row.get(2)))
            })
            .collect()
    }
}

impl Postgres {
    /// The log's head as committed.
    pub fn log_head(&self) -> Result<LogHead> {
        self.lease()?.log_head(false)
    }

    /// The hash tiles at `wanted` (level, index) that exist, as stored (at their latest width).
    pub fn log_tiles(&self, wanted: &[(u32, u64)]) -> Result<Vec<(u32, u64, Vec<u8>)>> {
        self.lease()?.log_tiles(wanted)
    }

    /// Entries `from..to` that exist, in order.
    pub fn log_entries(&self, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let conn = self.lease()?;
        let rows = conn.query(
            "SELECT index, entry FROM sshsign_audit_entries \
             WHERE index >= $1 AND index < $2 ORDER BY index",
            &[&to_i64(from, "entry index")?, &to_i64(to, "entry index")?],
        )?;
        rows.iter()
            .map(|row| Ok((to_u64(row.get(0), "entry index")?, row.get(1))))
            .collect()
    }

    /// The latest checkpoint, as `(size, note)`.
    pub fn log_latest_checkpoint(&self) -> Result<Option<(u64, String)>> {
        let conn = self.lease()?;
        let rows = conn.query(
            "SELECT size, note FROM sshsign_audit_checkpoints ORDER BY size DESC LIMIT 1",
            &[],
        )?;
        rows.first()
            .map(|row| Ok((to_u64(row.get(0), "checkpoint size")?, row.get(1))))
            .transpose()
    }

    /// The checkpoint signed at `size`.
    pub fn log_checkpoint_at(&self, size: u64) -> Result<Option<String>> {
        let conn = self.lease()?;
        let rows = conn.query(
            "SELECT note FROM sshsign_audit_checkpoints WHERE size = $1",
            &[&to_i64(size, "checkpoint size")?],
        )?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    /// Keeps a checkpoint; one another appliance kept at the same size first stays, and is
    /// returned (with any cosignatures added since).
    pub fn log_keep_checkpoint(&self, size: u64, note: &str) -> Result<String> {
        let conn = self.lease()?;
        let size = to_i64(size, "checkpoint size")?;
        let rows = conn.query(
            "WITH kept AS (INSERT INTO sshsign_audit_checkpoints (size, note) VALUES ($1, $2) \
                           ON CONFLICT (size) DO NOTHING RETURNING note) \
             SELECT note FROM kept \
             UNION ALL SELECT note FROM sshsign_audit_checkpoints WHERE size = $1",
            &[&size, &note],
        )?;
        rows.first()
            .map(|row| row.get(0))
            .ok_or_else(|| database("a checkpoint was neither kept nor found"))
    }

    /// Replaces the checkpoint at `size` by `note` if it still reads `was`: cosignature lines
    /// are added by compare-and-swap, so that none is lost when appliances cosign at once.
    pub fn log_replace_checkpoint(&self, size: u64, was: &str, note: &str) -> Result<bool> {
        let conn = self.lease()?;
        let replaced = conn.execute(
            "UPDATE sshsign_audit_checkpoints SET note = $3 WHERE size = $1 AND note = $2",
            &[&to_i64(size, "checkpoint size")?, &was, &note],
        )?;
        Ok(replaced == 1)
    }

    /// Runs `integrate` in one transaction holding the head's row lock: the one sequencer of
    /// every appliance's appends. What it writes is committed together, or not at all.
    pub fn log_sequence<T>(
        &self,
        integrate: impl FnOnce(&LogTransaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let conn = self.lease()?;
        block_on(
            conn.client
                .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
        )?;
        let outcome = integrate(&LogTransaction { conn: &conn });
        match outcome {
            Ok(value) => {
                block_on(conn.client.batch_execute("COMMIT"))?;
                Ok(value)
            }
            Err(e) => {
                // A broken connection has ended the transaction already.
                let _ = block_on(conn.client.batch_execute("ROLLBACK"));
                Err(e)
            }
        }
    }
}

/// The sequencer's transaction (see [`Postgres::log_sequence`]).
pub struct LogTransaction<'a> {
    conn: &'a Conn,
}

impl LogTransaction<'_> {
    /// The head, locked until the transaction ends: other appliances' appends wait here.
    pub fn lock_head(&self) -> Result<LogHead> {
        self.conn.log_head(true)
    }

    /// See [`Postgres::log_tiles`].
    pub fn tiles(&self, wanted: &[(u32, u64)]) -> Result<Vec<(u32, u64, Vec<u8>)>> {
        self.conn.log_tiles(wanted)
    }

    /// Adds `entries` as indexes `first…`.
    pub fn add_entries(&self, first: u64, entries: &[Vec<u8>]) -> Result<()> {
        let indexes = (0..entries.len() as u64)
            .map(|offset| to_i64(first + offset, "entry index"))
            .collect::<Result<Vec<i64>>>()?;
        let entries: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        self.conn.execute(
            "INSERT INTO sshsign_audit_entries (index, entry) \
             SELECT * FROM unnest($1::bigint[], $2::bytea[])",
            &[&indexes, &entries],
        )?;
        Ok(())
    }

    /// Writes hash tiles (level, index, hashes), replacing narrower widths.
    pub fn put_tiles(&self, tiles: &[(u32, u64, Vec<u8>)]) -> Result<()> {
        let mut levels = Vec::with_capacity(tiles.len());
        let mut indexes = Vec::with_capacity(tiles.len());
        let mut hashes = Vec::with_capacity(tiles.len());
        for (level, index, bytes) in tiles {
            levels.push(i16::try_from(*level).map_err(|_| database("a tile level"))?);
            indexes.push(to_i64(*index, "tile index")?);
            hashes.push(bytes.as_slice());
        }
        let params: [&(dyn ToSql + Sync); 3] = [&levels, &indexes, &hashes];
        self.conn.execute(
            "INSERT INTO sshsign_audit_tiles (level, index, hashes) \
             SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[]) \
             ON CONFLICT (level, index) DO UPDATE SET hashes = excluded.hashes",
            &params,
        )?;
        Ok(())
    }

    /// Moves the head to `head`.
    pub fn set_head(&self, head: &LogHead) -> Result<()> {
        self.conn.execute(
            "UPDATE sshsign_audit_head SET size = $1, root = $2",
            &[&to_i64(head.size, "size")?, &head.root],
        )?;
        Ok(())
    }
}
