-- The store's records and index entries, one row each: the trees of the sled store, named in
-- the `tree` column. Keys and values are the bytes sled keeps; sealed records are sealed here
-- too, so this table alone reveals no terms, metadata or secrets. bytea compares byte by byte,
-- as sled orders keys, so a range of the primary key is a prefix or range scan of a tree.
CREATE TABLE sshsign_records (
    tree  text  NOT NULL,
    key   bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tree, key)
);

-- Index entries sort in creation order by numbers from this sequence, shared by every
-- appliance.
CREATE SEQUENCE sshsign_sequence;
