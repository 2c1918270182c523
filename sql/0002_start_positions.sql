-- Start locations resolved to stream positions, and the commit time of the cursor.
--
-- A group's slot is shared by all its tables, so a table's start location cannot move the
-- slot; it becomes a per-table lower bound instead: the consumer drops the table's records
-- that committed before start_lsn (or, until the stream reaches it, before start_time).

ALTER TABLE changestream.group_tables
    -- Deliver this table's changes committed at or after this position.
    ADD COLUMN start_lsn  pg_lsn,
    -- AtTime not yet reached in the stream: deliver changes committed at or after this.
    ADD COLUMN start_time timestamptz;

-- The commit time of the transaction at (or just before) the cursor, so that AtTime can tell
-- a time before the oldest change the slot still holds.
ALTER TABLE changestream.cursors
    ADD COLUMN commit_time timestamptz;
