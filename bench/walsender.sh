#!/usr/bin/env bash
# The walsender's CPU per row for pg_recvlogical and for `pg-changestream tail` on the same
# WAL (issue 18; findings in BENCHMARKS.md, "Where the walsender's CPU goes").
#
#   bench/walsender.sh                      # 200k inserts / 100k updates / 60k deletes, 3 rounds
#   bench/walsender.sh --rows 50000 --rounds 5
#   bench/walsender.sh --tail-bin /tmp/other/pg-changestream   # another build of the CLI
#   bench/walsender.sh --perf-dir /tmp/prof  # and one `perf record -g` of a_tcp's and d_tcp's
#                                            # walsender, shares by cost centre
#                                            # (bench/walsender_profile.py)
#
# A throwaway PostgreSQL 15 (port --port, wal_sender_timeout=0 server-wide as in
# bench/run.sh, autovacuum off so no other backend ends during a run). One consumer group
# per tail run is created before the workload (bench/workload.sql, 100 rows per
# transaction), one base pgoutput slot too; every pg_recvlogical run drains its own copy of
# the base slot. Variants, run in a shuffled order each round:
#   a_tcp, a_unix          pg_recvlogical -F 0 over TCP loopback / the Unix socket
#   a_tcp_w60, a_unix_w60  the same with wal_sender_timeout=60s for that connection
#                          (options=-c ...: 0 sends the walsender down its slow path after
#                          every message, a recv() and more each time)
#   a_bin, a_bin_w60       -o binary=true
#   a_s1, a_s0             status interval 1 s / none (default 10 s)
#   d_tcp, d_unix          tail over TCP / the Unix socket
#   d_tcp_w60, d_unix_w60  with wal_sender_timeout=60s for the connection
# The walsender's CPU comes from bench/walsender_cpu.py (its last /proc sample and the
# CPU the postmaster reaped), the client's from its rusage. Results: JSON lines in
# bench/results/<stamp>-walsender.jsonl and a table of medians on stdout.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
rows=200000
rounds=3
port=56110
tail_bin=
perf_dir=
while (($#)); do
  case "$1" in
    --rows) rows=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --tail-bin) tail_bin=$2; shift 2 ;;
    --perf-dir) perf_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "walsender.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
n_ins=$rows n_upd=$((rows / 2)) n_del=$((rows * 3 / 10))
total=$((n_ins + n_upd + n_del + 1)) # and the bench_end row every run stops on

if [[ -z $tail_bin ]]; then
  cargo build --release --quiet -p pg-changestream-cli
  tail_bin=$root/target/release/pg-changestream
fi
B=/usr/lib/postgresql/15/bin
data=$(mktemp -d /tmp/walsender-pg.XXXXXX)
sock=$(mktemp -d /tmp/walsender-sock.XXXXXX)
as_pg=()
if [[ $(id -u) == 0 ]]; then as_pg=(runuser -u postgres --); chown postgres "$data" "$sock"; fi
cleanup() {
  "${as_pg[@]}" "$B/pg_ctl" -D "$data" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$data" "$sock"
}
trap cleanup EXIT
"${as_pg[@]}" "$B/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
"${as_pg[@]}" "$B/pg_ctl" -D "$data" -l "$data/server.log" -w start -o "-p $port \
  -c listen_addresses=127.0.0.1 -c unix_socket_directories=$sock -c wal_level=logical \
  -c max_replication_slots=100 -c max_wal_senders=20 -c shared_buffers=512MB \
  -c max_wal_size=16GB -c checkpoint_timeout=1h -c fsync=off -c wal_sender_timeout=0 \
  -c autovacuum=off" >/dev/null

w60="-c%20wal_sender_timeout%3D60s"
tcp_url="postgresql://postgres@127.0.0.1:$port/postgres"
unix_url="postgresql://postgres@${sock//\//%2F}:$port/postgres"
tcp_kv="host=127.0.0.1 port=$port user=postgres dbname=postgres"
unix_kv="host=$sock port=$port user=postgres dbname=postgres"
psqlc() { "$B/psql" -X -q -v ON_ERROR_STOP=1 -d "$tcp_url" -At "$@"; }

psqlc -f bench/workload.sql
psqlc -c "CREATE PUBLICATION bench_pub FOR TABLE bench, bench_end"
"$tail_bin" --url "$tcp_url" enable bench >/dev/null
"$tail_bin" --url "$tcp_url" enable bench_end >/dev/null
d_variants="d_tcp d_unix d_tcp_w60 d_unix_w60"
a_variants="a_tcp a_unix a_tcp_w60 a_unix_w60 a_bin a_bin_w60 a_s1 a_s0"
for r in $(seq 1 "$rounds") perf; do
  for v in $d_variants; do
    "$tail_bin" --url "$tcp_url" tail -g "${v}_$r" -t bench@latest -t bench_end@latest \
      --idle-exit 0.1 >/dev/null
  done
done
psqlc -c "SELECT 1 FROM pg_create_logical_replication_slot('bench_base', 'pgoutput')" >/dev/null
echo "walsender: workload $n_ins inserts, $n_upd updates, $n_del deletes" >&2
psqlc -c "SET synchronous_commit = off" -c "CALL bench_load($n_ins, $n_upd, $n_del, 100)"
end_lsn=$(psqlc -c "SELECT pg_current_wal_insert_lsn()" -c "SET synchronous_commit = on" \
  -c "INSERT INTO bench_end VALUES (now())" | head -1)
psqlc -c "CHECKPOINT"
cat "$data"/pg_wal/0* >/dev/null

mkdir -p bench/results
out=bench/results/$(date -u +%Y%m%dT%H%M%SZ)-walsender.jsonl
measure() { # LABEL PERFFILE CMD...
  local label=$1 perf=$2; shift 2
  python3 bench/walsender_cpu.py --pgdata "$data" --rows "$total" --label "$label" \
    ${perf:+--perf "$perf"} -- "$@" | tee -a "$out"
}
recv() { # LABEL ROUND CONNINFO [pg_recvlogical options]
  local label=$1 round=$2 slot="r_${1}_$2" conn=$3 perf=; shift 3
  [[ $round != perf ]] || { perf=$perf_dir/$label.data; label=${label}_perf; }
  psqlc -c "SELECT 1 FROM pg_copy_logical_replication_slot('bench_base', '$slot')" >/dev/null
  measure "$label" "$perf" "$B/pg_recvlogical" -d "$conn" --slot "$slot" --start \
    --endpos "$end_lsn" --no-loop -F 0 -f /dev/null -o proto_version=1 \
    -o publication_names=bench_pub "$@"
  psqlc -c "SELECT pg_drop_replication_slot('$slot')" >/dev/null
}
tailr() { # LABEL ROUND URL
  local perf= label=$1
  [[ $2 != perf ]] || { perf=$perf_dir/$1.data; label=${1}_perf; }
  measure "$label" "$perf" "$tail_bin" --url "$3" tail -g "${1}_$2" -t bench -t bench_end \
    --max-records "$total"
}
run() { # VARIANT ROUND
  case $1 in
    a_tcp) recv "$1" "$2" "$tcp_kv" ;;
    a_unix) recv "$1" "$2" "$unix_kv" ;;
    a_tcp_w60) recv "$1" "$2" "$tcp_kv options='-c wal_sender_timeout=60s'" ;;
    a_unix_w60) recv "$1" "$2" "$unix_kv options='-c wal_sender_timeout=60s'" ;;
    a_bin) recv "$1" "$2" "$tcp_kv" -o binary=true ;;
    a_bin_w60) recv "$1" "$2" "$tcp_kv options='-c wal_sender_timeout=60s'" -o binary=true ;;
    a_s1) recv "$1" "$2" "$tcp_kv" -s 1 ;;
    a_s0) recv "$1" "$2" "$tcp_kv" -s 0 ;;
    d_tcp) tailr "$1" "$2" "$tcp_url" ;;
    d_unix) tailr "$1" "$2" "$unix_url" ;;
    d_tcp_w60) tailr "$1" "$2" "$tcp_url?options=$w60" ;;
    d_unix_w60) tailr "$1" "$2" "$unix_url?options=$w60" ;;
  esac
}
# Warm-up: one drain reads the WAL once more, decoded, before anything is measured.
recv warm 0 "$tcp_kv" >/dev/null
for r in $(seq 1 "$rounds"); do
  for v in $(printf '%s\n' $a_variants $d_variants | shuf); do run "$v" "$r" >/dev/null; done
done
if [[ -n $perf_dir ]]; then
  mkdir -p "$perf_dir"
  for v in a_tcp d_tcp; do run "$v" perf >/dev/null; done
  for f in "$perf_dir"/*.data; do python3 bench/walsender_profile.py "$f"; done
fi
python3 - "$out" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d["label"] != "warm" and not d["label"].endswith("_perf"):
        rows.setdefault(d["label"], []).append(d)
print(f"{'variant':12} {'runs':>4} {'walsender µs/row':>17} {'client µs/row':>14} {'wall s':>7}  load")
for k in sorted(rows):
    v = rows[k]
    med = lambda f: statistics.median(x[f] for x in v)
    ld = [x["load_before"] for x in v]
    print(f"{k:12} {len(v):4} {med('walsender_us_per_row'):17.2f} {med('client_us_per_row'):14.2f} "
          f"{med('wall_s'):7.2f}  {min(ld):.1f}-{max(ld):.1f}")
EOF
echo "walsender: results in $out" >&2
