#!/usr/bin/env bash
# Make sure the services the integration tests talk to are answering on this machine:
# PostgreSQL (5432), Redis (6379) and RabbitMQ (5672). A service that answers is left
# alone; one that does not is started (and installed first, as root, if missing).
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    local port=$1 name=$2
    for _ in $(seq 1 60); do
        answers "$port" && return 0
        sleep 1
    done
    echo "services: $name is not answering on port $port" >&2
    return 1
}

install_if_missing() {
    local command=$1 package=$2
    if ! command -v "$command" >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
        else
            echo "services: $command is missing; install $package" >&2
            return 1
        fi
    fi
}

# Some integration tests run servers of their own, which they stop and start: a
# redis-server (tests/integration/test_durability.py) and a PostgreSQL made with initdb
# (tests/integration/test_faults.py). Their binaries must be here even when the shared
# services already answer.
install_if_missing redis-server redis-server
if ! command -v initdb >/dev/null && ! [ -x "$(pg_config --bindir 2>/dev/null)/initdb" ]; then
    install_if_missing pg_ctlcluster postgresql
fi

if ! answers 5432; then
    echo "services: starting PostgreSQL" >&2
    install_if_missing pg_ctlcluster postgresql
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | tail -n 1)" main start
    wait_port 5432 PostgreSQL
fi

if ! answers 6379; then
    echo "services: starting Redis" >&2
    install_if_missing redis-server redis-server
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_port 6379 Redis
fi

if ! answers 5672; then
    echo "services: starting RabbitMQ" >&2
    install_if_missing rabbitmq-server rabbitmq-server
    rabbitmq-server -detached
    wait_port 5672 RabbitMQ
fi

# The console's browser test drives Debian's Chromium through Playwright (no browser is
# downloaded: `playwright install` cannot reach its servers from everywhere).
if [ ! -x /usr/bin/chromium ]; then
    echo "services: installing Chromium for the console's browser test" >&2
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "services: /usr/bin/chromium is missing; install chromium" >&2
        exit 1
    fi
fi

# Prometheus and promtool: the tests check the rules in deploy/prometheus with promtool and
# run a Prometheus of their own (temporary data directory, a free port); nothing is started
# here.
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "services: installing prometheus" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            prometheus >/dev/null
    else
        echo "services: prometheus and promtool are missing; install prometheus" >&2
        exit 1
    fi
fi
