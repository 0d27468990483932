#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests: a cluster in a temporary directory, on 127.0.0.1 and a free port.
#
#   eval "$(tests/postgres.sh start)"   # starts one; prints the exports of CAIRN_POSTGRES and CAIRN_POSTGRES_DIR
#   tests/postgres.sh env [dir]         # prints those exports again for a running one
#   tests/postgres.sh stop [dir]        # stops it and deletes its directory (dir defaults to $CAIRN_POSTGRES_DIR)
#   tests/postgres.sh restart dir [fast|immediate]   # restarts it on the same port; immediate is a crash
#   tests/postgres.sh halt dir          # kills it (as a crash would), keeping its data and port
#   tests/postgres.sh resume dir        # starts a halted one again, with the options it was started with
#   tests/postgres.sh standby dir       # starts a streaming standby of the one in dir; prints its exports as start does
#   tests/postgres.sh promote dir       # promotes a standby to primary
#
# CAIRN_POSTGRES_SYNC_COMMIT=on starts a cluster whose commits are in the WAL before they are acknowledged, for
# tests that crash the server and count on every acknowledged commit; by default commits are asynchronous (faster).
#
# Installs Debian's postgresql package when no initdb is found. initdb refuses to run as root, so as root the
# cluster belongs to the postgres user. Progress goes to stderr; only the exports go to stdout.
# CAIRN_POSTGRES_DURABLE=1 keeps PostgreSQL's durable defaults (fsync, synchronous_commit, full_page_writes on), for
# benchmarks; by default they are off, since a test cluster is thrown away.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return 0
  fi
  return 1
}

ensure_installed() {
  if find_bindir >/dev/null; then return 0; fi
  log "initdb and pg_ctl are missing: installing Debian's postgresql package"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
  find_bindir >/dev/null || { log "postgresql was installed but initdb is still not found"; exit 1; }
}

# Runs a command as the cluster's owner: the postgres user when we are root, ourselves otherwise.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

exports() {
  local dir="$1" port
  port="$(cat "$dir/port")"
  local user; user="$(cat "$dir/user")"
  echo "export CAIRN_POSTGRES='Host=127.0.0.1;Port=$port;Username=$user;Database=cairn;Pooling=true;Maximum Pool Size=64'"
  echo "export CAIRN_POSTGRES_DIR='$dir'"
}

# Starts the cluster in $1 on a free port with the options $3 and that port's, and keeps both in the directory for
# restarts; $2 names it in messages. When it cannot, stops it, deletes the directory and exits.
launch_on_free_port() {
  local dir="$1" what="$2" base="$3" bin port attempt options
  bin="$(find_bindir)"
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    port_in_use "$port" && continue
    options="$base -c port=$port -c unix_socket_directories='$dir'"
    if as_owner "$bin/pg_ctl" -s -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o "$options" >&2; then
      echo "$port" >"$dir/port"
      echo "$options" >"$dir/options"
      return 0
    fi
    log "the $what did not start on port $port (attempt $attempt); trying another"
    tail -n 5 "$dir/server.log" >&2 || true
  done
  as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  log "could not start the $what"
  exit 1
}

start() {
  ensure_installed
  local bin dir user
  bin="$(find_bindir)"
  dir="$(mktemp -d "${TMPDIR:-/tmp}/cairn-pg.XXXXXX")"
  chmod 755 "$dir"
  user="$(id -un)"
  if [ "$(id -u)" -eq 0 ]; then
    user=postgres
    chown postgres "$dir"
  fi
  echo "$user" >"$dir/user"

  if ! as_owner "$bin/initdb" -D "$dir/data" -U "$user" --auth=trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    rm -rf "$dir"
    log "initdb failed"
    exit 1
  fi

  # A throwaway cluster: no fsync (a crash loses the whole directory anyway), connections for parallel tests.
  local port durability="-c fsync=off -c synchronous_commit=${CAIRN_POSTGRES_SYNC_COMMIT:-off} -c full_page_writes=off"
  if [ "${CAIRN_POSTGRES_DURABLE:-}" = 1 ]; then durability=""; fi
  launch_on_free_port "$dir" server "-c listen_addresses=127.0.0.1 $durability -c max_connections=400"
  port="$(cat "$dir/port")"

  if ! as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$user" cairn >&2; then
    stop "$dir"
    log "could not create the database"
    exit 1
  fi
  log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir"
  exports "$dir"
}

# A streaming standby of the cluster in $1: a base backup taken over replication (initdb's trust rules allow it from
# 127.0.0.1), which -R makes a standby of that primary, started with the primary's options on a port of its own.
standby() {
  local primary="$1"
  [ -f "$primary/port" ] || { log "standby: no running cluster in '$primary'"; exit 1; }
  local bin dir user primary_port
  bin="$(find_bindir)"
  user="$(cat "$primary/user")"
  primary_port="$(cat "$primary/port")"
  dir="$(mktemp -d "${TMPDIR:-/tmp}/cairn-pg.XXXXXX")"
  chmod 755 "$dir"
  [ "$(id -u)" -ne 0 ] || chown postgres "$dir"
  echo "$user" >"$dir/user"
  if ! as_owner "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U "$user" -D "$dir/data" -R -X stream -c fast >"$dir/basebackup.log" 2>&1; then
    cat "$dir/basebackup.log" >&2
    rm -rf "$dir"
    log "pg_basebackup failed"
    exit 1
  fi

  # The primary's options on a port of its own, but not the primary's synchronous standbys, which its base backup may
  # carry (ALTER SYSTEM): once promoted it would wait for standbys it does not have.
  local port primary_options
  primary_options="$(sed -e "s/-c port=[0-9]*//" -e "s|-c unix_socket_directories='[^']*'||" "$primary/options")"
  launch_on_free_port "$dir" standby "$primary_options -c synchronous_standby_names=''"
  port="$(cat "$dir/port")"
  log "standby of 127.0.0.1:$primary_port on 127.0.0.1:$port, data in $dir"
  exports "$dir"
}

promote() {
  local dir="$1"
  [ -f "$dir/port" ] || { log "promote: no cluster in '$dir'"; exit 1; }
  local bin; bin="$(find_bindir)"
  as_owner "$bin/pg_ctl" -s -D "$dir/data" -w -t 60 promote >&2
}

stop() {
  local dir="${1:-${CAIRN_POSTGRES_DIR:-}}"
  [ -n "$dir" ] || { log "stop: name the directory (or set CAIRN_POSTGRES_DIR)"; exit 1; }
  [ -d "$dir" ] || return 0
  case "$(basename "$dir")" in cairn-pg.*) ;; *) log "stop: $dir is not a directory this script made"; exit 1 ;; esac
  if [ -f "$dir/data/postmaster.pid" ]; then
    local bin; bin="$(find_bindir)"
    as_owner "$bin/pg_ctl" -s -D "$dir/data" -m fast -w -t 60 stop >&2 \
      || as_owner "$bin/pg_ctl" -s -D "$dir/data" -m immediate -w stop >&2 || true
  fi
  rm -rf "$dir"
}

restart() {
  local dir="$1" mode="${2:-fast}"
  [ -f "$dir/port" ] || { log "restart: no running cluster in '$dir'"; exit 1; }
  case "$mode" in fast|immediate) ;; *) log "restart: the mode is fast or immediate, not '$mode'"; exit 2 ;; esac
  local bin; bin="$(find_bindir)"
  # pg_ctl restart starts the server again with the options it was started with (postmaster.opts).
  as_owner "$bin/pg_ctl" -s -D "$dir/data" -l "$dir/server.log" -m "$mode" -w -t 60 restart >&2
}

halt() {
  local dir="$1"
  [ -f "$dir/port" ] || { log "halt: no cluster in '$dir'"; exit 1; }
  local bin; bin="$(find_bindir)"
  as_owner "$bin/pg_ctl" -s -D "$dir/data" -m immediate -w -t 60 stop >&2
}

resume() {
  local dir="$1"
  [ -f "$dir/options" ] || { log "resume: no cluster in '$dir'"; exit 1; }
  local bin; bin="$(find_bindir)"
  as_owner "$bin/pg_ctl" -s -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o "$(cat "$dir/options")" >&2
}

case "${1:-}" in
  start) start ;;
  halt) halt "${2:-}" ;;
  resume) resume "${2:-}" ;;
  standby) standby "${2:-}" ;;
  promote) promote "${2:-}" ;;
  stop) stop "${2:-}" ;;
  restart) restart "${2:-}" "${3:-fast}" ;;
  env)
    dir="${2:-${CAIRN_POSTGRES_DIR:-}}"
    [ -f "$dir/port" ] || { log "env: no running cluster in '$dir'"; exit 1; }
    exports "$dir" ;;
  *) echo "usage: $0 start|stop [dir]|env [dir]|restart dir [fast|immediate]|halt dir|resume dir|standby dir|promote dir" >&2; exit 2 ;;
esac
