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

# install_package PACKAGE [apt-get options]: as root with apt-get, else say what is missing.
install_package() {
    local package=$1
    shift
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "services: installing $package" >&2
        if [ -z "${apt_updated:-}" ]; then
            apt-get -o DPkg::Lock::Timeout=300 update -qq
            apt_updated=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
            "$@" "$package" >/dev/null
    else
        echo "services: $package is missing; install it (Debian: apt-get install $package)" >&2
        return 1
    fi
}

install_if_missing() {
    local command=$1 package=$2
    command -v "$command" >/dev/null || install_package "$package"
}

# Some integration tests run servers of their own, which they stop and start: a
# redis-server (tests/e2e/test_durability.py) and a PostgreSQL made with initdb
# (tests/support/faults.py, for tests/e2e/test_faults.py and test_many_hosts.py). Their
# binaries must be here even when the shared services already answer. Debian keeps initdb
# off the PATH, in /usr/lib/postgresql/<version>/bin, where the tests look for it too.
# The many-hosts tests make network namespaces with `ip` (iproute2). Under CI a test that
# finds one of these missing fails (tests/support/required.py); it never skips.
install_if_missing redis-server redis-server
has_initdb() {
    command -v initdb >/dev/null && return 0
    [ -x "$(pg_config --bindir 2>/dev/null)/initdb" ] && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
if ! has_initdb; then
    install_package postgresql
    has_initdb || { echo "services: no initdb after installing postgresql" >&2; exit 1; }
fi
install_if_missing ip iproute2

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
[ -x /usr/bin/chromium ] || install_package chromium

# Prometheus and promtool: the tests check the rules in deploy/prometheus with promtool and
# run a Prometheus of their own (temporary data directory, a free port); nothing is started
# here.
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    install_package prometheus --no-install-recommends
fi
