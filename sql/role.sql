-- A least-privilege role for pg-changestream on your own PostgreSQL (15-18).
--
-- Run it once per database, as a superuser (or as a role with CREATEROLE that may grant
-- the owner role below), connected to the database whose tables you will stream:
--
--   psql "postgres://admin@db.example/app" -v role=changestream -v password='change me' \
--        -v owner=app_owner -f sql/role.sql
--
-- then connect the tool as that role:
--
--   pg-changestream --url 'postgres://changestream:change%20me@db.example/app' enable orders
--
-- What each grant is for:
--   LOGIN REPLICATION  opening the replication connection (START_REPLICATION) and creating
--                      and dropping the groups' logical slots
--                      (pg_create_logical_replication_slot). Logical replication connections
--                      are matched in pg_hba.conf by database name, like ordinary ones (the
--                      `replication` keyword there is for physical replication only).
--   CREATE on the DB   creating the `changestream` schema that holds the groups' state
--                      (migrations run on first use), and CREATE PUBLICATION.
--   owner membership   ALTER TABLE ... REPLICA IDENTITY (before-images) and adding a table to
--                      a publication both require ownership of the table; membership in the
--                      role that owns the tables (with INHERIT, the default) gives exactly
--                      that, without superuser. Alternatively make this role the owner.
--
-- Not needed: superuser, pg_signal_backend (the tool only ends walsenders of its own role,
-- on `delete-group --force` and when fencing a silent member), or grants on other tables.
-- The server itself needs wal_level = logical (and free max_replication_slots and
-- max_wal_senders: one of each per partition of each group).

\set ON_ERROR_STOP on

CREATE ROLE :"role" LOGIN REPLICATION PASSWORD :'password';

SELECT format('GRANT CREATE ON DATABASE %I TO %I', current_database(), :'role') \gexec

GRANT :"owner" TO :"role";
