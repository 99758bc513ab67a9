#!/usr/bin/env bash
# Install (from Debian packages) and start redis-server and rabbitmq-server on
# 127.0.0.1 for the test suite, unless they already answer; also openssl, which
# the TLS tests use, tmux, which the terminal tests use, and chromium, which the
# dashboard's browser tests use. Idempotent.
set -euo pipefail

REDIS_PORT=${AQ_REDIS_PORT:-6379}
AMQP_PORT=${AQ_AMQP_PORT:-5672}
STATE_DIR=${AQ_SERVICES_DIR:-$PWD/.services}

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null; then sudo "$@"; else
            echo "services.sh: need root to run: $*" >&2; exit 1; fi
    else "$@"; fi
}

install_packages() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
    command -v openssl >/dev/null || missing+=(openssl)  # the TLS tests make certificates
    command -v tmux >/dev/null || missing+=(tmux)  # aq top is tested in a real terminal
    command -v chromium >/dev/null || missing+=(chromium)  # the dashboard is tested in a browser
    if [ ${#missing[@]} -gt 0 ]; then
        echo "services.sh: installing ${missing[*]}"
        need_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }
amqp_up() { (exec 3<>/dev/tcp/127.0.0.1/"$AMQP_PORT") 2>/dev/null; }

start_redis() {
    redis_up && return 0
    mkdir -p "$STATE_DIR/redis"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
        --dir "$STATE_DIR/redis" --appendonly yes --appendfsync everysec \
        --save "" --logfile "$STATE_DIR/redis/redis.log" --pidfile "$STATE_DIR/redis/redis.pid"
    for _ in $(seq 100); do redis_up && return 0; sleep 0.1; done
    echo "services.sh: redis-server did not start; see $STATE_DIR/redis/redis.log" >&2
    return 1
}

start_rabbitmq() {
    amqp_up && return 0
    mkdir -p "$STATE_DIR/rabbitmq"
    chown -R rabbitmq:rabbitmq "$STATE_DIR/rabbitmq" 2>/dev/null || true
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$AMQP_PORT"
    export RABBITMQ_DIST_PORT=$((AMQP_PORT + 20000))
    # epmd and Erlang distribution must listen on loopback too.
    export ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 600); do amqp_up && return 0; sleep 0.1; done
    echo "services.sh: rabbitmq-server did not start; see /var/log/rabbitmq/" >&2
    return 1
}

case "${1:-start}" in
    start)
        install_packages
        start_redis
        start_rabbitmq
        echo "services.sh: redis on 127.0.0.1:$REDIS_PORT, rabbitmq on 127.0.0.1:$AMQP_PORT"
        ;;
    stop)
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave 2>/dev/null || true
        rabbitmqctl stop 2>/dev/null || true
        ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
