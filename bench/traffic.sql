-- One pgbench transaction of the memory mode's traffic: a single-row insert, update and
-- delete, each its own transaction, on a table of another consumer group (bench_traffic).
\set id random(1, 1000000000)
INSERT INTO bench_traffic VALUES (:id, 'x') ON CONFLICT DO NOTHING;
UPDATE bench_traffic SET v = 'y' WHERE id = :id;
DELETE FROM bench_traffic WHERE id = :id;
