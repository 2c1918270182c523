#!/usr/bin/env bash
# Captures real pgoutput messages, one file per message, for the parser tests and the fuzz
# corpus. Each scenario runs SQL against a fresh logical slot, then reads the slot with
# pg_logical_slot_get_binary_changes, which returns exactly one pgoutput message per row
# (the same bytes a walsender puts in an XLogData payload).
#
# Usage: capture.sh OUT_DIR PROTO_VERSION [STREAMING]
#   env: PGHOST, PGPORT, PGUSER (a superuser), a server with wal_level=logical and
#        max_prepared_transactions > 0.
#   PROTO_VERSION: 3 for PostgreSQL 15, 4 for 16+. STREAMING: on (default) or parallel
#   (protocol 4: Stream Abort then carries the abort LSN and time).
# Files: OUT_DIR/<scenario>-<NNNN>-<tag>.bin, NNNN the message's position in the scenario;
# of a run of messages with one tag only the first three are kept.
set -euo pipefail

out=${1:?output dir}
proto=${2:?protocol version}
streaming=${3:-on}
mkdir -p "$out"

q() { psql -X -q -v ON_ERROR_STOP=1 -d capture -Atc "$1"; }

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'DROP DATABASE IF EXISTS capture' \
  -c 'CREATE DATABASE capture'

q "
CREATE TABLE item (id int PRIMARY KEY, name text, price numeric(10,2), active bool,
                   payload bytea, created timestamptz);
CREATE TABLE full_row (id int, note text);
ALTER TABLE full_row REPLICA IDENTITY FULL;
CREATE TABLE toasted (id int PRIMARY KEY, small int, big text);
ALTER TABLE toasted ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE parent (id serial PRIMARY KEY);
CREATE TABLE child (id serial PRIMARY KEY, parent_id int REFERENCES parent(id));
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE feeling (id int PRIMARY KEY, m mood);
CREATE TABLE bulk (id int PRIMARY KEY, filler text);
CREATE PUBLICATION p FOR ALL TABLES;
"

# scenario NAME SLOT_TWO_PHASE EXTRA_OPTIONS SQL...
scenario() {
  local name=$1 two_phase=$2 extra=$3
  shift 3
  q "SELECT 1 FROM pg_create_logical_replication_slot('cap', 'pgoutput', false, $two_phase)" >/dev/null
  for sql in "$@"; do q "$sql" >/dev/null; done
  # Aborts and non-transactional messages do not flush WAL, and the SQL interface reads
  # only up to the flushed position: commit a transaction that writes WAL (a catalog
  # change, which pgoutput does not send) to flush them.
  q "COMMENT ON TABLE item IS 'flush'" >/dev/null
  local opts="'proto_version', '$proto', 'publication_names', 'p', 'messages', 'true'$extra"
  local i=0 prev='' run=0
  # logical_decoding_work_mem applies to the decoding session: set it there so large
  # transactions are streamed.
  psql -X -q -v ON_ERROR_STOP=1 -d capture -At \
    -c "SET logical_decoding_work_mem = '64kB'" \
    -c "SELECT encode(data, 'hex') FROM pg_logical_slot_get_binary_changes('cap', NULL, NULL, $opts)" |
    while read -r hex; do
      local tag
      tag=$(printf '%s' "${hex:0:2}" | xxd -r -p)
      # Large transactions repeat one message hundreds of times: keep the first three of
      # each run (the numbering keeps the gaps visible).
      if [ "$tag" = "$prev" ]; then run=$((run + 1)); else run=0; prev=$tag; fi
      if [ "$run" -lt 3 ]; then
        printf '%s' "$hex" | xxd -r -p >"$out/$(printf '%s-%04d-%s.bin' "$name" "$i" "$tag")"
      fi
      i=$((i + 1))
    done
  q "SELECT pg_drop_replication_slot('cap')" >/dev/null
}

scenario basic false "" \
  "INSERT INTO item VALUES (1, 'widget', 9.99, true, '\\xdeadbeef', '2024-01-02 03:04:05+00')" \
  "INSERT INTO item VALUES (2, NULL, NULL, NULL, NULL, NULL)" \
  "UPDATE item SET name = 'gadget' WHERE id = 1" \
  "UPDATE item SET id = 10 WHERE id = 2" \
  "DELETE FROM item WHERE id = 10"

scenario full false "" \
  "INSERT INTO full_row VALUES (1, 'before')" \
  "UPDATE full_row SET note = 'after' WHERE id = 1" \
  "DELETE FROM full_row WHERE id = 1"

scenario toast false "" \
  "INSERT INTO toasted SELECT 1, 0, string_agg(md5(i::text), '') FROM generate_series(1, 200) i" \
  "UPDATE toasted SET small = 1 WHERE id = 1"

scenario truncate false "" \
  "INSERT INTO parent DEFAULT VALUES; INSERT INTO child (parent_id) VALUES (1)" \
  "TRUNCATE parent CASCADE" \
  "TRUNCATE parent, child RESTART IDENTITY"

scenario message false "" \
  "BEGIN; INSERT INTO item VALUES (3, 'm', 1, false, NULL, NULL);
   SELECT pg_logical_emit_message(true, 'tx-prefix', 'in a transaction'); COMMIT" \
  "SELECT pg_logical_emit_message(false, 'wm', '\\x00ff'::bytea)"

scenario enum false "" \
  "INSERT INTO feeling VALUES (1, 'happy')"

scenario origin false "" \
  "SELECT pg_replication_origin_create('upstream')
   WHERE NOT EXISTS (SELECT FROM pg_replication_origin WHERE roname = 'upstream')" \
  "SELECT pg_replication_origin_session_setup('upstream');
   BEGIN; SELECT pg_replication_origin_xact_setup('0/ABCDEF', '2024-01-01 00:00:00+00');
   INSERT INTO item VALUES (4, 'from upstream', 2, true, NULL, NULL); COMMIT;
   SELECT pg_replication_origin_session_reset()"

scenario stream false ", 'streaming', '$streaming'" \
  "INSERT INTO bulk SELECT i, repeat('x', 1000) FROM generate_series(1, 300) i" \
  "BEGIN; INSERT INTO bulk SELECT i, repeat('y', 1000) FROM generate_series(2001, 2300) i;
   SAVEPOINT s; INSERT INTO bulk SELECT i, repeat('z', 1000) FROM generate_series(4001, 4300) i;
   ROLLBACK TO SAVEPOINT s; COMMIT" \
  "BEGIN; INSERT INTO bulk SELECT i, repeat('w', 1000) FROM generate_series(6001, 6300) i; ROLLBACK"

scenario twophase true ", 'two_phase', 'on'" \
  "BEGIN; INSERT INTO item VALUES (5, 'prepared', 3, true, NULL, NULL); PREPARE TRANSACTION 'gid-commit'" \
  "COMMIT PREPARED 'gid-commit'" \
  "BEGIN; INSERT INTO item VALUES (6, 'rolled back', 4, true, NULL, NULL); PREPARE TRANSACTION 'gid-rollback'" \
  "ROLLBACK PREPARED 'gid-rollback'"

scenario streamprepare true ", 'two_phase', 'on', 'streaming', '$streaming'" \
  "BEGIN; INSERT INTO bulk SELECT i, repeat('p', 1000) FROM generate_series(10001, 10300) i;
   PREPARE TRANSACTION 'gid-stream'" \
  "COMMIT PREPARED 'gid-stream'"

q "SELECT pg_replication_origin_drop('upstream')" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'DROP DATABASE capture'
