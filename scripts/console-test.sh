#!/usr/bin/env bash
# The web console's end-to-end tests (tests/console): headless Debian Chromium driven by
# playwright-core against a fresh Arctern, with state made by pika and confluent-kafka.
#   1. installs what it needs (idempotent, as root): Debian's chromium (the browser Playwright
#      drives; `npx playwright install` cannot download one here), node/npm, the Python venv
#      (.venv, through scripts/test.sh SETUP_ONLY=1) unless PYTHON points at one;
#   2. `npm ci` in tests/console (playwright-core only; it downloads no browser);
#   3. runs `node --test` there against ARCTERN_BIN (default target/release/arctern; built
#      with cargo build --release -p arctern if missing), then the same tests against a real
#      RabbitMQ 3.10 (CONSOLE_RABBITMQ=0 skips that run).
# Screenshots: target/console-artifacts/ (CONSOLE_ARTIFACTS overrides).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
export DEBIAN_FRONTEND=noninteractive

APT_UPDATED=0
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "need root to apt-get install $*" >&2
        return 1
    fi
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

echo "==> system packages (chromium, nodejs, npm)"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] || apt_install chromium
command -v node >/dev/null 2>&1 || apt_install nodejs
command -v npm >/dev/null 2>&1 || apt_install npm
"$CHROMIUM" --version || true
echo "node $(node --version), npm $(npm --version)"

if [ -z "${PYTHON:-}" ]; then
    if [ ! -x "$ROOT/.venv/bin/python" ]; then
        echo "==> python venv (scripts/test.sh SETUP_ONLY=1)"
        SETUP_ONLY=1 bash "$ROOT/scripts/test.sh"
    fi
    export PYTHON="$ROOT/.venv/bin/python"
fi

export ARCTERN_BIN="${ARCTERN_BIN:-$ROOT/target/release/arctern}"
if [ ! -x "$ARCTERN_BIN" ]; then
    echo "==> cargo build --release --locked -p arctern"
    cargo build --release --locked -p arctern
fi

echo "==> npm ci (tests/console)"
cd "$ROOT/tests/console"
npm ci --no-audit --no-fund --loglevel=error

status=0
echo "==> node --test (tests/console, against $ARCTERN_BIN)"
node --test --test-concurrency=1 --test-reporter=spec console.test.js || status=1

# The same page and tests against RabbitMQ 3.10's own management API (Kafka parts skipped):
# proof that the page reads RabbitMQ's shapes. tests/python/rabbit.py installs
# rabbitmq-server if needed. CONSOLE_RABBITMQ=0 skips this run.
if [ "${CONSOLE_RABBITMQ:-1}" != 0 ]; then
    echo "==> node --test (tests/console, against RabbitMQ)"
    CONSOLE_TARGET=rabbitmq node --test --test-concurrency=1 --test-reporter=spec console.test.js || status=1
fi
exit "$status"
