-- One pgbench transaction of the latency mode: 10 rows of the benchmark's shape into
-- bench_lat (keys from an identity column, so clients never collide).
INSERT INTO bench_lat (label, amount, created, attrs, padding)
SELECT 'customer-' || g, g / 100.0, now(),
       jsonb_build_object('sku', 'SKU-' || g, 'qty', g, 'tags', jsonb_build_array('red', 'large'), 'gift', true),
       repeat('p', 96)
FROM generate_series(1, 10) AS g;
