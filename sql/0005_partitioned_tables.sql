-- Partitioned tables (issue 15).
--
-- 1. Enabling a partitioned table sets the replica identity of every partition below it
--    (the WAL of a change is written by the partition, under the partition's identity), so
--    what each partition had before is remembered here and restored on disable.
-- 2. Publications publish changes of partitions as their root (publish_via_partition_root):
--    before this, pgoutput named the partitions, which no group lists, and every change of
--    a partitioned table was passed over. Existing groups' publications are altered here,
--    so they deliver such changes from this migration on (changes decoded before it were
--    passed over and are not sent again).
-- 3. On PostgreSQL 18, stored generated columns are published too
--    (publish_generated_columns = stored); 15-17 cannot publish them.

CREATE TABLE changestream.table_leaves (
    schema_name       text   NOT NULL,
    table_name        text   NOT NULL,
    -- A partition (leaf or intermediate) below the enabled table, at any depth.
    leaf_schema       text   NOT NULL,
    leaf_name         text   NOT NULL,
    -- pg_class.relreplident of the partition before we first touched it: d, n, f or i.
    original_identity "char" NOT NULL,
    -- The index of REPLICA IDENTITY USING INDEX, when original_identity = 'i'.
    original_index    text,
    PRIMARY KEY (schema_name, table_name, leaf_schema, leaf_name),
    FOREIGN KEY (schema_name, table_name) REFERENCES changestream.tables ON DELETE CASCADE
);

DO $$
DECLARE
    publication name;
    options text := 'publish_via_partition_root = true';
BEGIN
    IF current_setting('server_version_num')::int >= 180000 THEN
        options := options || ', publish_generated_columns = stored';
    END IF;
    FOR publication IN
        SELECT p.publication_name FROM changestream.partitions p
          JOIN pg_publication pp ON pp.pubname = p.publication_name
    LOOP
        -- Only the publication's owner may alter it; a migration run by another role must
        -- not fail for that. Each consumer build sets the options of its own group's
        -- publications too (group::partition::ensure_publication_options).
        BEGIN
            EXECUTE format('ALTER PUBLICATION %I SET (%s)', publication, options);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'publication % is not ours to alter; its group sets it when built',
                publication;
        END;
    END LOOP;
END $$;
