-- The schema of `pg-changestream demo`: a tiny shop. Run by the demo on its throwaway
-- server; also fine to try by hand on a scratch database.

CREATE SCHEMA shop;

CREATE TABLE shop.customers (
    id    bigint PRIMARY KEY,
    name  text   NOT NULL,
    email text
);

CREATE TABLE shop.orders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint        NOT NULL REFERENCES shop.customers,
    status      text          NOT NULL DEFAULT 'new',
    total       numeric(10,2) NOT NULL,
    items       jsonb         NOT NULL DEFAULT '[]',
    placed_at   timestamptz   NOT NULL DEFAULT '2026-01-01 12:00:00+00',
    -- Long notes are stored out of line (TOAST) and uncompressed, so the demo shows how an
    -- UPDATE that leaves a TOASTed value alone is reported.
    note        text
);
ALTER TABLE shop.orders ALTER COLUMN note SET STORAGE EXTERNAL;
