-- Row filter and projection per table of a group (issue 15). The filter itself lives in the
-- group's publications (where the server applies it); it is kept here as the user gave it,
-- to tell a changed filter from the same one given again. A projection applies on the
-- consumer side: only_columns (the key columns included) or except_columns, NULL for all.
ALTER TABLE changestream.group_tables
    ADD COLUMN row_filter     text,
    ADD COLUMN only_columns   text[],
    ADD COLUMN except_columns text[];

-- Per partition and relation, the columns in force before the transaction at the partition's
-- committed cursor, written with the cursor: a new consumer compares the first Relation
-- message of each table with them, so a column change made while no consumer ran still
-- becomes a schema record (and a Relation message merely re-sent does not).
CREATE TABLE changestream.relation_shapes (
    group_id    text    NOT NULL,
    partition   integer NOT NULL,
    relation_id oid     NOT NULL,
    schema_name text    NOT NULL,
    table_name  text    NOT NULL,
    columns     jsonb   NOT NULL,
    PRIMARY KEY (group_id, partition, relation_id),
    FOREIGN KEY (group_id, partition) REFERENCES changestream.partitions ON DELETE CASCADE
);
