# Sourced by scripts/test and benches/run: makes sure PostgreSQL and the MongoDB-wire test
# server answer, installing and starting them when missing. Fails loudly, never skips.
# Exports TEST_DATABASE_URL and TEST_MONGO_URI.

: "${TEST_DATABASE_URL:=postgres://postgres:postgres@127.0.0.1:5432/postgres}"
: "${TEST_MONGO_URI:=mongodb://127.0.0.1:27517/?directConnection=true&retryWrites=false}"
# Tools installed for tests live outside the clone so CI runs and worktrees share them.
: "${COMMERCE_TOOLS_DIR:=${XDG_CACHE_HOME:-$HOME/.cache}/commerce-dev}"
export TEST_DATABASE_URL TEST_MONGO_URI COMMERCE_TOOLS_DIR

say() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() { # host port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do port_open "$1" "$2" && return 0; sleep 0.1; done
  return 1
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

apt_install() {
  command -v apt-get >/dev/null || return 1
  say "installing $* with apt-get"
  as_root apt-get update -qq >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if port_open 127.0.0.1 5432; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql postgresql-client ||
      die "PostgreSQL is not running on 127.0.0.1:5432 and could not be installed. Install PostgreSQL 14+ and start it, or set TEST_DATABASE_URL."
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
    die "could not start PostgreSQL: run 'pg_ctlcluster --skip-systemctl-redirect $version main start' and read its log"
  wait_port 127.0.0.1 5432 30 || die "PostgreSQL did not open 127.0.0.1:5432 within 30 s"
  # A fresh Debian cluster wants a password over TCP: give the postgres role the one in the URL.
  as_root su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null 2>&1 || true
}

ensure_redis() {
  if port_open 127.0.0.1 6379; then return 0; fi
  command -v redis-server >/dev/null || apt_install redis-server ||
    die "Redis is not running on 127.0.0.1:6379 and could not be installed. Install Redis 6+ and start it, or set TEST_REDIS_URL."
  say "starting Redis on 127.0.0.1:6379 (nothing kept on disk)"
  redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no >/dev/null ||
    die "could not start redis-server: run 'redis-server --port 6379' and read what it says"
  wait_port 127.0.0.1 6379 30 || die "Redis did not open 127.0.0.1:6379 within 30 s"
}

# Open now and still open a moment later: a server that is shutting down may still accept.
port_steady() { port_open "$1" "$2" && sleep 0.5 && port_open "$1" "$2"; }

ensure_mongo() {
  local host=127.0.0.1 port=27517
  if port_steady "$host" "$port"; then return 0; fi
  # A server that was stopped just before needs a few seconds to release the port.
  wait_closed() { local i; for ((i = 0; i < 50; i++)); do port_open "$host" "$port" || return 0; sleep 0.1; done; }
  wait_closed
  local venv="$COMMERCE_TOOLS_DIR/venv-mongo"
  if [ ! -x "$venv/bin/secantusd-py" ]; then
    command -v python3 >/dev/null || apt_install python3 python3-venv || die "python3 (>= 3.10) is needed for the MongoDB-wire test server"
    say "installing the MongoDB-wire test server (SecantusDB, see ../shared/MONGO.md) into $venv"
    mkdir -p "$COMMERCE_TOOLS_DIR"
    python3 -m venv "$venv" || { apt_install python3-venv && python3 -m venv "$venv"; } || die "could not create a Python venv at $venv"
    "$venv/bin/pip" install -q 'SecantusDB==0.7.0b3' || die "pip could not install SecantusDB==0.7.0b3"
  fi
  local attempt pid
  for attempt in 1 2 3; do
    say "starting the MongoDB-wire test server on $host:$port (attempt $attempt)"
    nohup "$venv/bin/secantusd-py" --host "$host" --port "$port" --storage-path :memory: --log-level WARNING \
      >"$COMMERCE_TOOLS_DIR/secantusd.log" 2>&1 &
    pid=$!
    echo "$pid" >"$COMMERCE_TOOLS_DIR/secantusd.pid"
    # A server stopped just before may hold the port for a few seconds: if ours exits, retry.
    local i
    for ((i = 0; i < 600; i++)); do
      port_open "$host" "$port" && return 0
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    sleep 3
  done
  die "the MongoDB-wire test server did not open $host:$port; see $COMMERCE_TOOLS_DIR/secantusd.log"
}
