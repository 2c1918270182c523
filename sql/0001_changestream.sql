-- pg-changestream state, kept in the source database so it commits and fails over with it.
-- Applied by pg_changestream::group::catalog under an advisory lock; never edit an applied
-- migration, add the next file instead.

CREATE SCHEMA IF NOT EXISTS changestream;

-- Tables enabled for change streaming, with what to restore on disable.
CREATE TABLE changestream.tables (
    schema_name       text        NOT NULL,
    table_name        text        NOT NULL,
    before_images     boolean     NOT NULL,
    -- pg_class.relreplident before we first touched the table: d, n, f or i.
    original_identity "char"      NOT NULL,
    -- The index of REPLICA IDENTITY USING INDEX, when original_identity = 'i'.
    original_index    text,
    enabled_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, table_name)
);

-- Consumer groups. Slot and publication names are derived, never the raw group id, which
-- may hold any characters.
CREATE TABLE changestream.groups (
    group_id         text        PRIMARY KEY CHECK (length(group_id) BETWEEN 1 AND 63),
    partitions       integer     NOT NULL DEFAULT 1 CHECK (partitions BETWEEN 1 AND 64),
    message_prefixes text[]      NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- One logical slot and one publication per partition of a group.
CREATE TABLE changestream.partitions (
    group_id         text    NOT NULL REFERENCES changestream.groups ON DELETE CASCADE,
    partition        integer NOT NULL,
    slot_name        name    NOT NULL UNIQUE,
    publication_name name    NOT NULL UNIQUE,
    PRIMARY KEY (group_id, partition)
);

-- The tables each group reads, with where each started.
CREATE TABLE changestream.group_tables (
    group_id       text        NOT NULL REFERENCES changestream.groups ON DELETE CASCADE,
    schema_name    text        NOT NULL,
    table_name     text        NOT NULL,
    start_location text        NOT NULL,
    -- The WAL position at which the table joined the group's publication.
    joined_lsn     pg_lsn,
    added_at       timestamptz NOT NULL DEFAULT now(),
    -- Backfill progress (Earliest): state, last key delivered, rows done, estimate.
    backfill_state text        NOT NULL DEFAULT 'none',
    backfill_key   jsonb,
    backfill_rows  bigint      NOT NULL DEFAULT 0,
    backfill_total bigint,
    PRIMARY KEY (group_id, schema_name, table_name)
);

-- The durable committed cursor per partition. The slot's confirmed_flush_lsn reaches disk
-- only at checkpoints; this row commits with every consumer commit, so a server crash does
-- not redeliver committed work. (commit_lsn, records_done) is "every transaction that
-- committed before commit_lsn, plus the first records_done records of the one at it".
CREATE TABLE changestream.cursors (
    group_id     text        NOT NULL,
    partition    integer     NOT NULL,
    commit_lsn   pg_lsn      NOT NULL,
    records_done bigint      NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, partition),
    FOREIGN KEY (group_id, partition) REFERENCES changestream.partitions ON DELETE CASCADE
);

-- Members of a group sharing its partitions.
CREATE TABLE changestream.members (
    group_id     text        NOT NULL REFERENCES changestream.groups ON DELETE CASCADE,
    member_id    text        NOT NULL,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    max_poll_interval interval NOT NULL,
    partitions   integer[]   NOT NULL DEFAULT '{}',
    PRIMARY KEY (group_id, member_id)
);
