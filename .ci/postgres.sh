# Sourced by .ci/run: starts a throwaway PostgreSQL 15 cluster as the unprivileged `postgres`
# user (initdb refuses root), on 127.0.0.1 and a free port, and exports SIGNET_TEST_DATABASE_URL.
# The test helper (test/helpers/database.ts) creates one database per test file in it, so the
# `signet` role is the cluster's superuser. fsync is off: the cluster is thrown away after the run.
PG_BIN=/usr/lib/postgresql/15/bin

ci_postgres_start() {
  PG_DIR=$(mktemp -d /tmp/signet-pg.XXXXXX)
  chown postgres:postgres "$PG_DIR"
  PG_PORT=$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
  runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U signet -E UTF8 --no-locale -N >/dev/null
  # Test files run in parallel and each opens a pool (plus extra handles in the multi-node tests).
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null
  export SIGNET_TEST_DATABASE_URL="postgres://signet@127.0.0.1:$PG_PORT/postgres"
  export PG_DIR
  echo "ci: PostgreSQL on 127.0.0.1:$PG_PORT"
}

ci_postgres_stop() {
  if [ -n "${PG_DIR:-}" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
