-- What a sink (`pg-changestream publish`) last saw acknowledged by its broker and then
-- committed to the group: one row per group and sink, written right after each cursor
-- commit. `status` shows it; the cursor itself stays the record of truth (this row may lag
-- it by one commit after a crash, never lead it).
CREATE TABLE changestream.sink_progress (
    group_id         text        NOT NULL REFERENCES changestream.groups ON DELETE CASCADE,
    sink             text        NOT NULL,
    target           text        NOT NULL,
    last_acked_event text        NOT NULL,
    records_acked    bigint      NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, sink)
);
