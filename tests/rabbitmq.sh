#!/usr/bin/env bash
# A throwaway RabbitMQ for the tests: one node in a temporary directory, on 127.0.0.1 and free ports.
#
#   eval "$(tests/rabbitmq.sh start)"   # starts one; prints the exports of CAIRN_RABBITMQ and CAIRN_RABBITMQ_DIR
#   tests/rabbitmq.sh start --tls dir   # also listens for TLS with dir's ca.pem, cert.pem and key.pem, requiring a
#                                       # client certificate signed by that CA; exports CAIRN_RABBITMQ_TLS too
#   tests/rabbitmq.sh env [dir]         # prints those exports again for a running one
#   tests/rabbitmq.sh stop [dir]        # stops it and deletes its directory (dir defaults to $CAIRN_RABBITMQ_DIR)
#   tests/rabbitmq.sh halt [dir]        # kills the node but keeps its directory (a broker crash, for fault tests)
#   tests/rabbitmq.sh resume [dir]      # starts a halted node again, on the same ports with the same data
#   tests/rabbitmq.sh stop-listed file  # stops every node whose directory the file lists (CAIRN_RABBITMQ_NODES: when
#                                       # it is set, start adds each node's directory to that file)
#
# Installs Debian's rabbitmq-server package when it is missing. The package's wrapper script switches to the
# rabbitmq user and writes under /var/log, so the node is started with /usr/lib/rabbitmq/bin/rabbitmq-server
# directly, with every path (home, Erlang cookie, data, logs, configuration) in the temporary directory and the
# management and Prometheus plugins off. Progress goes to stderr; only the exports go to stdout.
set -euo pipefail

log() { echo "rabbitmq.sh: $*" >&2; }

server=/usr/lib/rabbitmq/bin/rabbitmq-server
ctl=/usr/lib/rabbitmq/bin/rabbitmqctl

ensure_installed() {
  [ -x "$server" ] && return 0
  log "$server is missing: installing Debian's rabbitmq-server package"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  # The package's service is not wanted (and cannot start without systemd): only its files are.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq rabbitmq-server >&2
  [ -x "$server" ] || { log "rabbitmq-server was installed but $server is still not found"; exit 1; }
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local port attempt
  for attempt in $(seq 1 50); do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    port_in_use "$port" || { echo "$port"; return 0; }
  done
  return 1
}

# The environment every command on the node runs with: all of it inside the directory.
node_env() {
  local dir="$1"
  echo HOME="$dir/home" \
    RUNNING_UNDER_SYSTEMD=true \
    RABBITMQ_NODENAME="$(cat "$dir/node")" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$(cat "$dir/port")" \
    RABBITMQ_DIST_PORT="$(cat "$dir/dist-port")" \
    RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" \
    RABBITMQ_LOGS="$dir/log/node.log" \
    RABBITMQ_PID_FILE="$dir/node.pid"
}

# The ports the node must listen on before it counts as started: AMQP's, and the TLS listener's when it has one.
ports_open() {
  local dir="$1"
  port_in_use "$(cat "$dir/port")" || return 1
  [ ! -f "$dir/tls-port" ] || port_in_use "$(cat "$dir/tls-port")"
}

launch() {
  local dir="$1" port
  port="$(cat "$dir/port")"
  # setsid: the node outlives this script, and a Ctrl-C in the caller's terminal does not reach it.
  # shellcheck disable=SC2046
  env $(node_env "$dir") setsid "$server" >"$dir/log/console.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  local i
  for i in $(seq 1 240); do
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      tail -n 20 "$dir/log/console.log" >&2 || true
      log "the node exited while starting"
      return 1
    fi
    if ports_open "$dir"; then
      # The listeners open before the node has finished booting: until then rabbitmqctl refuses commands such as
      # set_policy ("requires the 'rabbit' app to be running").
      # shellcheck disable=SC2046
      if env $(node_env "$dir") "$ctl" -n "$(cat "$dir/node")" await_startup --timeout 60 >"$dir/log/await_startup.log" 2>&1; then
        return 0
      fi
      cat "$dir/log/await_startup.log" >&2 || true
      log "the node did not finish booting within 60 s"
      return 1
    fi
    sleep 0.25
  done
  log "the node did not accept connections on port $port (and its TLS port, if any) within 60 s"
  return 1
}

exports() {
  local dir="$1"
  echo "export CAIRN_RABBITMQ='amqp://guest:guest@127.0.0.1:$(cat "$dir/port")/'"
  # By name: the test certificates name both localhost and 127.0.0.1.
  [ ! -f "$dir/tls-port" ] || echo "export CAIRN_RABBITMQ_TLS='amqps://guest:guest@localhost:$(cat "$dir/tls-port")/'"
  echo "export CAIRN_RABBITMQ_DIR='$dir'"
}

# The TLS listener's lines of rabbitmq.conf: the node's certificate and key, and the CA its clients' certificates
# must be signed by (a client without one is refused).
tls_config() {
  local dir="$1"
  cat <<EOF
listeners.ssl.local = 127.0.0.1:$(cat "$dir/tls-port")
ssl_options.cacertfile = $dir/tls/ca.pem
ssl_options.certfile = $dir/tls/cert.pem
ssl_options.keyfile = $dir/tls/key.pem
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
EOF
}

start() {
  local tls=""
  if [ "${1:-}" = --tls ]; then
    tls="${2:-}"
    for f in ca.pem cert.pem key.pem; do
      [ -f "$tls/$f" ] || { log "--tls: '$tls' has no $f"; exit 2; }
    done
  fi
  ensure_installed
  local dir
  dir="$(mktemp -d "${TMPDIR:-/tmp}/cairn-rabbitmq.XXXXXX")"
  # A list a caller keeps of every node started under it, to stop those a killed test process left running.
  [ -z "${CAIRN_RABBITMQ_NODES:-}" ] || echo "$dir" >>"$CAIRN_RABBITMQ_NODES"
  mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
  if [ -n "$tls" ]; then
    mkdir -p "$dir/tls"
    cp "$tls/ca.pem" "$tls/cert.pem" "$tls/key.pem" "$dir/tls/"
  fi
  echo "cairn-$(basename "$dir" | cut -d. -f2 | tr '[:upper:]' '[:lower:]')@localhost" >"$dir/node"
  # The Erlang cookie of this node alone: rabbitmqctl finds it in the same HOME.
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/home/.erlang.cookie"
  chmod 400 "$dir/home/.erlang.cookie"
  : >"$dir/rabbitmq-env.conf"
  echo "[]." >"$dir/enabled_plugins"
  echo "[]." >"$dir/advanced.config"
  cat >"$dir/rabbitmq.base.conf" <<'EOF'
# A throwaway node for tests: loopback only, no disk or memory alarms that a busy test machine could trip.
loopback_users = none
disk_free_limit.absolute = 1
vm_memory_high_watermark.relative = 0.9
log.console = false
log.file.level = warning
EOF

  local attempt started=""
  for attempt in 1 2 3 4 5; do
    free_port >"$dir/port"
    free_port >"$dir/dist-port"
    cp "$dir/rabbitmq.base.conf" "$dir/rabbitmq.conf"
    if [ -n "$tls" ]; then
      free_port >"$dir/tls-port"
      tls_config "$dir" >>"$dir/rabbitmq.conf"
    fi
    if launch "$dir"; then started=1; break; fi
    log "the node did not start (attempt $attempt); trying other ports"
    kill -KILL "$(cat "$dir/pid")" 2>/dev/null || true
    rm -rf "$dir/mnesia"/*
  done
  if [ -z "$started" ]; then
    rm -rf "$dir"
    log "could not start RabbitMQ"
    exit 1
  fi
  log "RabbitMQ $(ls -d /usr/lib/rabbitmq/lib/rabbitmq_server-* | sed 's/.*-//') as $(cat "$dir/node") on 127.0.0.1:$(cat "$dir/port"), data in $dir"
  exports "$dir"
}

check_dir() {
  local dir="$1"
  [ -n "$dir" ] || { log "name the directory (or set CAIRN_RABBITMQ_DIR)"; exit 1; }
  case "$(basename "$dir")" in cairn-rabbitmq.*) ;; *) log "$dir is not a directory this script made"; exit 1 ;; esac
}

# Ends the node's process: a polite TERM first, a KILL when it does not go within 30 s (or at once with "kill").
end_node() {
  local dir="$1" how="${2:-term}" pid
  [ -f "$dir/pid" ] || return 0
  pid="$(cat "$dir/pid")"
  if kill -0 "$pid" 2>/dev/null; then
    if [ "$how" = kill ]; then
      kill -KILL "$pid" 2>/dev/null || true
    else
      kill -TERM "$pid" 2>/dev/null || true
    fi
    local i
    for i in $(seq 1 120); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
  fi
  rm -f "$dir/pid"
}

stop() {
  local dir="${1:-${CAIRN_RABBITMQ_DIR:-}}"
  check_dir "$dir"
  [ -d "$dir" ] || return 0
  end_node "$dir"
  rm -rf "$dir"
}

case "${1:-}" in
  start) start "${@:2}" ;;
  stop) stop "${2:-}" ;;
  stop-listed)
    [ -f "${2:-}" ] || exit 0
    while read -r listed; do
      [ -z "$listed" ] || stop "$listed"
    done <"$2" ;;
  halt)
    dir="${2:-${CAIRN_RABBITMQ_DIR:-}}"
    check_dir "$dir"
    end_node "$dir" kill ;;
  resume)
    dir="${2:-${CAIRN_RABBITMQ_DIR:-}}"
    check_dir "$dir"
    [ -f "$dir/port" ] || { log "resume: no node in '$dir'"; exit 1; }
    end_node "$dir"
    launch "$dir" ;;
  ctl)
    dir="${2:-${CAIRN_RABBITMQ_DIR:-}}"
    check_dir "$dir"
    shift 2
    # shellcheck disable=SC2046
    env $(node_env "$dir") "$ctl" -n "$(cat "$dir/node")" "$@" ;;
  env)
    dir="${2:-${CAIRN_RABBITMQ_DIR:-}}"
    [ -f "$dir/port" ] || { log "env: no node in '$dir'"; exit 1; }
    exports "$dir" ;;
  *) echo "usage: $0 start [--tls dir] | stop [dir] | halt [dir] | resume [dir] | ctl dir args... | env [dir]" >&2; exit 2 ;;
esac
