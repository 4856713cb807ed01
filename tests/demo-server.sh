# Sourced by the browser, fuzz and HTTP benchmark scripts: start `civicflow serve --demo` on
# a loopback port with a fresh SQLite database, wait until it answers, and stop it and
# remove its files on exit. Needs ROOT and BIN; sets WORK, DB, LOG and SERVER.

stop_demo_server() {
  [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null
  [ -n "${WORK:-}" ] && rm -rf "$WORK"
  return 0
}

# start_demo_server PORT [more serve flags...]
start_demo_server() {
  local port=$1
  shift
  WORK=$(mktemp -d)
  DB="sqlite://$WORK/demo.db"
  LOG="$WORK/server.log"
  trap stop_demo_server EXIT
  (cd "$ROOT" && exec "$BIN" serve --demo --listen "127.0.0.1:$port" --db "$DB" \
    --plugin-cache "$WORK/cache" "$@" >"$LOG" 2>&1) &
  SERVER=$!
  for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER" 2>/dev/null || { cat "$LOG"; echo "the server stopped"; exit 1; }
    sleep 0.5
  done
  echo "the server did not answer on port $port within a minute"
  exit 1
}
