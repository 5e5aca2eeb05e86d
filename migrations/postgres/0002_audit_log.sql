-- The audit log several appliances share: one Merkle tree, C2SP tlog-tiles in tables.
--
-- The head is one row. Appending takes its row lock (`SELECT … FOR UPDATE`), so batches from
-- every appliance are integrated one after another, each in one transaction with its entries,
-- its tiles and the new head: no index is given twice, and nothing half-integrated is seen.
CREATE TABLE sshsign_audit_head (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    size bigint  NOT NULL CHECK (size >= 0),
    root bytea   NOT NULL CHECK (length(root) = 32)
);
-- The empty tree: its root is SHA-256 of nothing (RFC 6962).
INSERT INTO sshsign_audit_head (size, root) VALUES (0, sha256(''::bytea));

-- Entries, one row each: bundles are read as ranges.
CREATE TABLE sshsign_audit_entries (
    index bigint PRIMARY KEY CHECK (index >= 0),
    entry bytea  NOT NULL
);

-- Hash tiles by (level, index), as the tile at its latest width: the rightmost tile of a level
-- grows until it holds 256 hashes; any narrower width the tree had is a prefix of it.
CREATE TABLE sshsign_audit_tiles (
    level smallint NOT NULL CHECK (level >= 0),
    index bigint   NOT NULL CHECK (index >= 0),
    hashes bytea   NOT NULL,
    PRIMARY KEY (level, index)
);

-- Every checkpoint signed, by the size it signs: the checkpoint key is deterministic Ed25519
-- and the same in every appliance's token, so two appliances signing one size sign one note.
CREATE TABLE sshsign_audit_checkpoints (
    size bigint PRIMARY KEY CHECK (size >= 0),
    note text   NOT NULL
);
