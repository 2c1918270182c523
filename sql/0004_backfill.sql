-- Backfill progress per partition.
--
-- Each partition of a group backfills its own share of a table (the rows its row filter
-- sends it), so progress is kept per (group, partition, table): the last key whose chunk
-- was committed, rows covered so far, an estimate of the total, and whether it is done.
-- Rows are written in the same transaction as the partition's cursor, so after a crash the
-- backfill resumes after the last chunk whose read records were committed. The per-group
-- backfill_* columns of group_tables (0001) predate partitions and stay unused.

CREATE TABLE changestream.backfills (
    group_id        text    NOT NULL,
    partition       integer NOT NULL,
    schema_name     text    NOT NULL,
    table_name      text    NOT NULL,
    -- Join order: tables are backfilled one after another in this order.
    seq             bigint  GENERATED ALWAYS AS IDENTITY,
    -- Key values (as text, in key column order) of the last row of the last committed
    -- chunk; NULL before the first.
    last_key        text[],
    rows_done       bigint  NOT NULL DEFAULT 0,
    estimated_total bigint,
    done            boolean NOT NULL DEFAULT false,
    PRIMARY KEY (group_id, partition, schema_name, table_name),
    FOREIGN KEY (group_id, schema_name, table_name)
        REFERENCES changestream.group_tables ON DELETE CASCADE
);
