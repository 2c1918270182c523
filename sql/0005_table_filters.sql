-- Row filter and projection per table of a group (issue 15). The filter itself lives in the
-- group's publications (where the server applies it); it is kept here as the user gave it,
-- to tell a changed filter from the same one given again. A projection applies on the
-- consumer side: only_columns (the key columns included) or except_columns, NULL for all.
ALTER TABLE changestream.group_tables
    ADD COLUMN row_filter     text,
    ADD COLUMN only_columns   text[],
    ADD COLUMN except_columns text[];
