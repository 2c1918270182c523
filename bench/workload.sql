-- Schema and workload of the side-by-side benchmark (bench/run.sh). psql variables:
-- :n_ins, :n_upd, :n_del (row counts), :per_txn (rows per transaction).

-- A row of realistic shape, about 200 bytes of column data: bigint key, text, numeric,
-- timestamptz, jsonb and padding. REPLICA IDENTITY FULL, so updates and deletes carry
-- the whole old row (the before-image) as a CDC user would configure it.
CREATE TABLE IF NOT EXISTS bench (
    id      bigint PRIMARY KEY,
    label   text NOT NULL,
    amount  numeric(14, 2) NOT NULL,
    created timestamptz NOT NULL,
    attrs   jsonb NOT NULL,
    padding text NOT NULL
);
ALTER TABLE bench REPLICA IDENTITY FULL;

-- The end marker: one row committed after the workload; every contender stops on it.
CREATE TABLE IF NOT EXISTS bench_end (at timestamptz PRIMARY KEY);

-- Inserts, then updates of the first :n_upd keys, then deletes of the last :n_del keys,
-- committing every :per_txn rows (a procedure may COMMIT inside its loop).
CREATE OR REPLACE PROCEDURE bench_load(n_ins bigint, n_upd bigint, n_del bigint, per_txn int)
LANGUAGE plpgsql AS $$
DECLARE
    i bigint;
BEGIN
    i := 0;
    WHILE i < n_ins LOOP
        INSERT INTO bench
        SELECT g,
               'customer-' || g,
               (g % 1000003) / 100.0,
               timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
               jsonb_build_object('sku', 'SKU-' || (g % 9973), 'qty', g % 17,
                                  'tags', jsonb_build_array('red', 'large'), 'gift', g % 2 = 0),
               repeat('p', 96)
        FROM generate_series(i + 1, least(i + per_txn, n_ins)) AS g;
        COMMIT;
        i := i + per_txn;
    END LOOP;
    i := 0;
    WHILE i < n_upd LOOP
        UPDATE bench SET amount = amount + 1, label = label || '*'
        WHERE id BETWEEN i + 1 AND least(i + per_txn, n_upd);
        COMMIT;
        i := i + per_txn;
    END LOOP;
    i := 0;
    WHILE i < n_del LOOP
        DELETE FROM bench
        WHERE id BETWEEN n_ins - n_del + i + 1 AND n_ins - n_del + least(i + per_txn, n_del);
        COMMIT;
        i := i + per_txn;
    END LOOP;
END
$$;
