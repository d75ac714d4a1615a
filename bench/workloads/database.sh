#!/bin/sh
# database: PostgreSQL 15 with a decision-support query set over tables
# made by generate_series (TPC-H-shaped: scan, join, aggregate, sort).
#   database.sh [small|full]    (STREAMS=S: S sessions run the query set at
#                                once, bench fig7; each must get the same rows)
# small: 30000 line items; full: 3000000 (plus a pgbench OLTP run).
# Server set-up and loading are untimed; the query set is the timed
# region. checksum = md5 of the query results as `psql -At` prints them.
# The data are integer formulas of the row number, so xtask's test
# (xtask/src/tests/workloads.rs) computes the same results on the host.
. /opt/disco/workloads/lib.sh
SIZE=${1:-small}
case "$SIZE" in small) N=30000 ;; full) N=3000000 ;; *) echo "database: size is small or full, not $SIZE" >&2; exit 2 ;; esac
fresh_scratch
chmod 777 "$SCRATCH"
PG=/usr/lib/postgresql/15/bin
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
as_pg $PG/initdb -D "$SCRATCH/data" -A trust -U postgres -E UTF8 --locale=C --no-sync >initdb.log 2>&1 ||
    { tail -20 initdb.log; exit 1; }
as_pg $PG/pg_ctl -D "$SCRATCH/data" -l "$SCRATCH/server.log" -w -t 300 \
    -o "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c listen_addresses='' -c unix_socket_directories=$SCRATCH -c max_parallel_workers_per_gather=0" \
    start >/dev/null || { tail -20 server.log; exit 1; }
trap 'as_pg $PG/pg_ctl -D "$SCRATCH/data" -m fast -w stop >/dev/null 2>&1 || true' EXIT
sql() { $PG/psql -h "$SCRATCH" -U postgres -X -q -v ON_ERROR_STOP=1 -At -F'|' "$@"; }

sql -d postgres >/dev/null <<SQL
CREATE TABLE customer AS SELECT c AS c_custkey, c % 25 AS c_nation, (c * 7) % 5 AS c_segment
  FROM generate_series(1, $N / 60) c;
CREATE TABLE orders AS SELECT o AS o_orderkey, (o * 13) % ($N / 60) + 1 AS o_custkey,
  (o * 37) % 2400 AS o_orderdate, o % 5 AS o_priority FROM generate_series(1, $N / 4) o;
CREATE TABLE part AS SELECT p AS p_partkey, p % 10 AS p_type, p % 50 + 1 AS p_size
  FROM generate_series(1, $N / 30) p;
CREATE TABLE lineitem AS SELECT i AS l_id, (i - 1) / 4 + 1 AS l_orderkey,
  (i::bigint * 7919) % ($N / 30) + 1 AS l_partkey, i % 50 + 1 AS l_quantity,
  ((i::bigint * 31) % 100000 + 100)::bigint AS l_price, i % 11 AS l_discount,
  (((i - 1) / 4 + 1) * 37) % 2400 + i % 121 AS l_shipdate, chr(65 + i % 3) AS l_returnflag
  FROM generate_series(1, $N) i;
CREATE INDEX ON orders (o_orderkey);
CREATE INDEX ON customer (c_custkey);
ANALYZE;
SQL

STREAMS=${STREAMS:-1}
case "$STREAMS" in '' | *[!0-9]* | 0) echo "database: STREAMS is a count >= 1, not $STREAMS" >&2; exit 2 ;; esac
cat >queries.sql <<'SQL'
-- Q1: pricing summary (scan + aggregate)
SELECT 'q1', l_returnflag, count(*), sum(l_quantity), sum(l_price), sum(l_price * (100 - l_discount))
  FROM lineitem WHERE l_shipdate <= 2300 GROUP BY l_returnflag ORDER BY l_returnflag;
-- Q3: shipping priority (3-way join, aggregate, top 10)
SELECT 'q3', l_orderkey, sum(l_price * (100 - l_discount)) AS rev, o_orderdate
  FROM customer JOIN orders ON c_custkey = o_custkey JOIN lineitem ON l_orderkey = o_orderkey
  WHERE c_segment = 1 AND o_orderdate < 1200 AND l_shipdate > 1200
  GROUP BY l_orderkey, o_orderdate ORDER BY rev DESC, l_orderkey LIMIT 10;
-- Q5: revenue by nation (join, aggregate, sort)
SELECT 'q5', c_nation, sum(l_price * (100 - l_discount)) AS rev
  FROM customer JOIN orders ON c_custkey = o_custkey JOIN lineitem ON l_orderkey = o_orderkey
  WHERE o_orderdate >= 365 AND o_orderdate < 730 GROUP BY c_nation ORDER BY rev DESC, c_nation;
-- Q6: forecasting revenue change (selective scan)
SELECT 'q6', sum(l_price * l_discount) FROM lineitem
  WHERE l_shipdate >= 365 AND l_shipdate < 730 AND l_discount BETWEEN 5 AND 7 AND l_quantity < 24;
-- Q14-like: line items of small parts by type (join with part)
SELECT 'q14', p_type, count(*), sum(l_quantity) FROM lineitem JOIN part ON l_partkey = p_partkey
  WHERE p_size < 10 GROUP BY p_type ORDER BY p_type;
-- a sort: the 5 most expensive line items
SELECT 'top', l_id, l_price FROM lineitem ORDER BY l_price DESC, l_id LIMIT 5;
SQL
begin database
s=1
while [ $s -le "$STREAMS" ]; do
    sql -d postgres -f queries.sql >results.$s.txt 2>&1 &
    s=$((s + 1))
done
wait
end database
s=2
while [ $s -le "$STREAMS" ]; do
    cmp -s results.1.txt results.$s.txt || { echo "database: stream $s got other rows than stream 1" >&2; exit 1; }
    s=$((s + 1))
done
mv results.1.txt results.txt
QUERY_SECONDS=$SECONDS_TAKEN
cat results.txt
CHECK=$(md5 <results.txt)
TPS=
if [ "$SIZE" = full ]; then
    as_pg $PG/pgbench -h "$SCRATCH" -U postgres -i -q -s 2 postgres >pgbench.log 2>&1
    begin pgbench
    TPS=$(as_pg $PG/pgbench -h "$SCRATCH" -U postgres -c "$NPROC" -j "$NPROC" -T 60 postgres 2>&1 | awk '/^tps/ { print $3; exit }')
    end pgbench
    TPS=" pgbench_tps=$TPS"
fi
echo "RESULT workload=database size=$SIZE lineitems=$N seconds=$QUERY_SECONDS rows=$(wc -l <results.txt) streams=$STREAMS$TPS checksum=$CHECK"
