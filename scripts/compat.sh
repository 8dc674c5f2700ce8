#!/usr/bin/env bash
# Client conformance: the client libraries' own integration suites, run against a fresh
# Arctern and (the AMQP ones) against RabbitMQ, with the tests that pass on RabbitMQ but
# fail on Arctern listed by name. A measure, not a gate: differences do not fail the script.
#
#   scripts/compat.sh                          # every suite whose source is present
#   scripts/compat.sh pika aio-pika            # only these suites
#   TARGETS=arctern scripts/compat.sh pika     # only against Arctern
#   RDK_TESTS="0030 0082" scripts/compat.sh librdkafka   # a subset of librdkafka's tests
#
# Suites (their sources are NOT part of this repository; put checkouts under $COMPAT_SRC):
#   librdkafka  $COMPAT_SRC/librdkafka  confluentinc/librdkafka, tests/ (C test-runner)
#   pika        $COMPAT_SRC/pika        pika/pika, tests/acceptance
#   aio-pika    $COMPAT_SRC/aio-pika    mosquito/aio-pika, tests/
# `scripts/compat.sh sources` prints which commit of each was measured last
# (docs/compatibility-results.md) and where to put it.
#
# Knobs (environment):
#   COMPAT_SRC        directory holding the checkouts (default: .compat-src, git-ignored)
#   TARGETS           any of: arctern rabbitmq (default both; librdkafka runs on arctern only)
#   ARCTERN_BIN       broker binary (default: target/release/arctern; the script does not build)
#   COMPAT_OUT        where logs and results go (default: target/compat-<UTC date>; kept)
#   COMPAT_VENV       venv for the Python suites (default: .compat-venv, git-ignored), created
#                     from scripts/compat-requirements.txt (pinned) when missing or stale
#   RDK_TESTS         librdkafka test numbers to run (default: every test in tests/test.c)
#   RDK_TEST_TIMEOUT  seconds one librdkafka test number may take before it is killed
#                     (default 900; 0113_cooperative_rebalance takes about 10 minutes)
#   RDK_KAFKA_VERSION TEST_KAFKA_VERSION for librdkafka (default 2.8.0: the API versions
#                     Arctern advertises)
#   RDK_NODES         Arctern nodes for librdkafka (default 1; 3 = a cluster like the suite's
#                     own trivup one, needed by the tests that create topics with RF 3)
#   PY_TEST_TIMEOUT   pytest-timeout seconds per Python test (default 60)
#   PYTEST_ARGS       extra pytest arguments (e.g. "-k basic_get")
#
# librdkafka runs in full mode (no -Q) with -E (no socket-fault "sockem" tests) and -L (no
# local-only tests), one test number per test-runner process (so a hang or crash costs one
# test), against one Arctern with num.partitions=4 (as the suite's own trivup cluster). Tests
# flagged local/sockem/manual are not counted. The build (./configure --disable-curl, make,
# make -C tests build) runs once when tests/test-runner is missing; the Debian build deps are
# installed with apt-get when missing.
#
# pika's suite hard-codes 127.0.0.1:5672 / localhost:5672: it runs from a copy of the checkout
# with that port replaced by the broker's. aio-pika's conftest starts RabbitMQ in Docker: the
# copy's conftest is patched to skip Docker and use AMQP_HOST / AMQP_PORT.
#
# RabbitMQ: Debian's rabbitmq-server (installed with apt-get when missing), a private node on
# free loopback ports with its own epmd, data dir and cookie, as scripts/bench-amqp.sh does.
# Arctern: `arctern serve` with a fresh data dir on free loopback ports. Both are fresh for
# each suite and stopped by PID.
#
# Exit status: 0 when every selected suite ran (whatever its results), 1 when a suite could
# not be run (source missing when named, build failed, broker did not start, runner broke).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

COMPAT_SRC="${COMPAT_SRC:-$ROOT/.compat-src}"
TARGETS="${TARGETS:-arctern rabbitmq}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${ARCTERN_BIN:-$TARGET_DIR/release/arctern}"
COMPAT_OUT="${COMPAT_OUT:-$TARGET_DIR/compat-$(date -u +%Y%m%dT%H%M%SZ)}"
COMPAT_VENV="${COMPAT_VENV:-$ROOT/.compat-venv}"
RDK_TEST_TIMEOUT="${RDK_TEST_TIMEOUT:-900}"
RDK_KAFKA_VERSION="${RDK_KAFKA_VERSION:-2.8.0}"
RDK_NODES="${RDK_NODES:-1}"
PY_TEST_TIMEOUT="${PY_TEST_TIMEOUT:-60}"
PYTEST_ARGS="${PYTEST_ARGS:-}"
ALL_SUITES="librdkafka pika aio-pika"

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'compat.sh: %s\n' "$*" >&2; exit 1; }

# Where each suite comes from: repository, the commit measured in docs/compatibility-results.md.
suite_repo() {
    case "$1" in
        librdkafka) echo "confluentinc/librdkafka" ;;
        pika) echo "pika/pika" ;;
        aio-pika) echo "mosquito/aio-pika" ;;
    esac
}
suite_ref() {
    case "$1" in
        librdkafka) echo "tag v2.15.0 (9a94e11452cdeb0a844db44ee5dd01ccbe17d3ab)" ;;
        pika) echo "tag 1.4.4 (60fee4203a30d5dfa0500857cea6a65ef571d46c)" ;;
        aio-pika) echo "tag 9.6.0 (6623e037f8e7479cccc907fd70234239f9e9bf6d)" ;;
    esac
}
how_to_get() {
    local s="$1"
    printf '  %-10s obtain a checkout of the GitHub repository %s at %s\n             and put it at %s/%s\n' \
        "$s" "$(suite_repo "$s")" "$(suite_ref "$s")" "$COMPAT_SRC" "$s"
}

if [ "${1:-}" = sources ] || [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
    echo "The suites' sources are not in this repository. For each suite:"
    for s in $ALL_SUITES; do how_to_get "$s"; done
    echo "(COMPAT_SRC=$COMPAT_SRC; see the comment at the top of $0 for the knobs.)"
    exit 0
fi

# --- what to run --------------------------------------------------------------------------------
SUITES=()
if [ "$#" -gt 0 ]; then
    for s in "$@"; do
        case " $ALL_SUITES " in *" $s "*) ;; *) die "unknown suite '$s' (one of: $ALL_SUITES)" ;; esac
        [ -d "$COMPAT_SRC/$s" ] || { how_to_get "$s" >&2; die "no source for $s at $COMPAT_SRC/$s"; }
        SUITES+=("$s")
    done
else
    for s in $ALL_SUITES; do
        if [ -d "$COMPAT_SRC/$s" ]; then
            SUITES+=("$s")
        else
            log "skipping $s: no source at $COMPAT_SRC/$s. To run it:"
            how_to_get "$s" >&2
        fi
    done
    [ "${#SUITES[@]}" -gt 0 ] || die "no suite source under $COMPAT_SRC ('$0 sources' says how to get them)"
fi
for t in $TARGETS; do
    case "$t" in arctern | rabbitmq) ;; *) die "unknown target '$t' in TARGETS (arctern, rabbitmq)" ;; esac
done
want_target() { case " $TARGETS " in *" $1 "*) return 0 ;; esac; return 1; }
want_target arctern && { [ -x "$BIN" ] || die "no arctern binary at $BIN (cargo build --release -p arctern, or set ARCTERN_BIN)"; }

mkdir -p "$COMPAT_OUT"
COMPAT_OUT="$(cd "$COMPAT_OUT" && pwd)"
RESULTS="$COMPAT_OUT/results.tsv"   # suite, target, test, outcome, reason
: >"$RESULTS"
SUITE_ERRORS=()
log "logs and results in $COMPAT_OUT"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
apt_install() {
    [ -z "$SUDO" ] || command -v sudo >/dev/null || { log "need root or sudo to install: $*"; return 1; }
    $SUDO apt-get update >&2 && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "$@" >&2
}

# --- processes ------------------------------------------------------------------------------------
ARCTERN_PID=""     # node 1 (the only node unless RDK_NODES > 1)
ARCTERN_PIDS=()    # every node
RMQ_PID=""
RMQ_BEAM=""
EPMD_PID=""

stop_pid() { # PID NAME SECONDS: SIGTERM, then SIGKILL after SECONDS
    local pid="$1" name="$2" secs="$3" i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) ignored SIGTERM for $secs s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
stop_arctern() {
    local p
    for p in "${ARCTERN_PIDS[@]}"; do stop_pid "$p" arctern 15; done
    ARCTERN_PID=""
    ARCTERN_PIDS=()
}
arctern_alive() {
    local p
    [ "${#ARCTERN_PIDS[@]}" -gt 0 ] || return 1
    for p in "${ARCTERN_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || return 1; done
}
stop_rabbit() {
    stop_pid "$RMQ_PID" rabbitmq-server 30
    if [ -n "$RMQ_BEAM" ] && kill -0 "$RMQ_BEAM" 2>/dev/null; then stop_pid "$RMQ_BEAM" "rabbitmq beam" 10; fi
    stop_pid "$EPMD_PID" epmd 5
    RMQ_PID=""; RMQ_BEAM=""; EPMD_PID=""
}
cleanup() { stop_arctern; stop_rabbit; }
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_ports() { # N distinct free loopback ports
    local n="$1" out=() p
    while [ "${#out[@]}" -lt "$n" ]; do
        p=$((20000 + RANDOM % 40000))
        port_free "$p" || continue
        case " ${out[*]-} " in *" $p "*) continue ;; esac
        out+=("$p")
    done
    echo "${out[*]}"
}
wait_port() { # PORT PID SECONDS: 0 once PORT accepts, 1 if PID exits or time is up
    local port="$1" pid="$2" secs="$3" i
    for i in $(seq 1 $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || return 1
        port_free "$port" || return 0
        sleep 0.1
    done
    return 1
}

# start_arctern DIR [CONFIG-LINES] [NODES]: sets ARCTERN_KAFKA, ARCTERN_AMQP (node 1) and
# ARCTERN_BOOTSTRAP (every node). NODES > 1: a cluster, every node a Raft voter (as
# tests/python/cluster.py starts one), each with its own data dir, ports and log.
ARCTERN_KAFKA=""
ARCTERN_AMQP=""
ARCTERN_BOOTSTRAP=""
start_arctern() {
    local d="$1" config="${2:-}" nodes="${3:-1}" attempt i ports voters ok nd args
    for attempt in 1 2 3; do
        read -r -a ports <<<"$(free_ports $((3 * nodes)))"
        rm -rf "$d"
        mkdir -p "$d"
        voters=""
        for ((i = 0; i < nodes; i++)); do voters+="${voters:+,}$((i + 1))@127.0.0.1:${ports[3 * i + 2]}"; done
        ARCTERN_KAFKA="${ports[0]}"
        ARCTERN_AMQP="${ports[1]}"
        ARCTERN_BOOTSTRAP=""
        ARCTERN_PIDS=()
        for ((i = 0; i < nodes; i++)); do
            nd="$d"
            [ "$nodes" = 1 ] || nd="$d/node-$((i + 1))"
            mkdir -p "$nd"
            args=(serve --data-dir "$nd/data" --kafka-listen "127.0.0.1:${ports[3 * i]}"
                --amqp-listen "127.0.0.1:${ports[3 * i + 1]}")
            [ "$nodes" = 1 ] || args+=(--node-id "$((i + 1))" --controller-quorum-voters "$voters")
            if [ -n "$config" ]; then
                printf '%s\n' "$config" >"$nd/arctern.toml"
                args+=(--config "$nd/arctern.toml")
            fi
            RUST_LOG="${RUST_LOG:-info}" "$BIN" "${args[@]}" >"$nd/broker.log" 2>&1 &
            ARCTERN_PIDS+=("$!")
            ARCTERN_BOOTSTRAP+="${ARCTERN_BOOTSTRAP:+,}127.0.0.1:${ports[3 * i]}"
        done
        ARCTERN_PID="${ARCTERN_PIDS[0]}"
        ok=1
        for ((i = 0; i < nodes; i++)); do
            wait_port "${ports[3 * i]}" "${ARCTERN_PIDS[i]}" 60 && wait_port "${ports[3 * i + 1]}" "${ARCTERN_PIDS[i]}" 30 || ok=0
        done
        [ "$ok" = 1 ] && return 0
        log "arctern did not come up (attempt $attempt); log head:"
        head -n 8 "$d"/broker.log "$d"/node-*/broker.log >&2 2>/dev/null || true
        stop_arctern
    done
    return 1
}

RMQ_LIB=/usr/lib/rabbitmq/bin
ensure_rabbit() {
    [ -x "$RMQ_LIB/rabbitmq-server" ] && return 0
    log "installing rabbitmq-server (Debian package)"
    # The package's postinst starts the service unless policy-rc.d says no: add one for the
    # install if there is none (and remove only the one we added).
    local added=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null && added=1
        $SUDO chmod 755 /usr/sbin/policy-rc.d
    fi
    apt_install rabbitmq-server
    [ "$added" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
    if command -v systemctl >/dev/null && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
        $SUDO systemctl stop rabbitmq-server || true
    fi
    [ -x "$RMQ_LIB/rabbitmq-server" ]
}

# start_rabbit DIR: sets RMQ_PORT
RMQ_PORT=""
start_rabbit() {
    local d="$1" attempt dist epmd_port
    for attempt in 1 2 3; do
        read -r RMQ_PORT dist epmd_port <<<"$(free_ports 3)"
        rm -rf "$d"
        mkdir -p "$d/mnesia" "$d/log" "$d/home"
        echo '[].' >"$d/enabled_plugins"
        : >"$d/rabbitmq-env.conf"
        printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users.guest = true\n' "$RMQ_PORT" >"$d/rabbitmq.conf"
        epmd -address 127.0.0.1 -port "$epmd_port" >"$d/epmd.log" 2>&1 &
        EPMD_PID=$!
        wait_port "$epmd_port" "$EPMD_PID" 10 || { stop_rabbit; continue; }
        env HOME="$d/home" \
            ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT="$epmd_port" \
            RABBITMQ_NODENAME="compat-$$@localhost" \
            RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$RMQ_PORT" \
            RABBITMQ_DIST_PORT="$dist" \
            RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" \
            RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
            RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
            RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf" \
            RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
            RABBITMQ_PLUGINS_EXPAND_DIR="$d/plugins-expand" \
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
            "$RMQ_LIB/rabbitmq-server" >"$d/stdout.log" 2>&1 &
        RMQ_PID=$!
        if wait_port "$RMQ_PORT" "$RMQ_PID" 120; then
            RMQ_BEAM="$(pgrep -P "$RMQ_PID" | head -n1 || true)"
            return 0
        fi
        log "RabbitMQ did not come up on port $RMQ_PORT (attempt $attempt); log tail:"
        tail -n 20 "$d/stdout.log" >&2 || true
        stop_rabbit
    done
    return 1
}

# start_amqp_target TARGET DIR: starts the broker, sets AMQP_PORT
AMQP_PORT=""
AMQP_ARCTERN_CONFIG='"amqp.max_message_size" = 134217728
"amqp.queue_segment_bytes" = 268435456'
start_amqp_target() {
    case "$1" in
        # Arctern's default amqp.max_message_size is RabbitMQ 4's (16 MiB); the RabbitMQ
        # beside it here is 3.10, whose default is 128 MiB (aio-pika's test_big_message
        # sends 22 MB), so the AMQP suites run both with 128 MiB.
        arctern) start_arctern "$2" "$AMQP_ARCTERN_CONFIG" && AMQP_PORT="$ARCTERN_AMQP" ;;
        rabbitmq) ensure_rabbit && start_rabbit "$2" && AMQP_PORT="$RMQ_PORT" ;;
    esac
}
stop_target() { case "$1" in arctern) stop_arctern ;; rabbitmq) stop_rabbit ;; esac; }

suite_error() { log "ERROR: $*"; SUITE_ERRORS+=("$*"); }

# --- Python venv ------------------------------------------------------------------------------------
REQS="$ROOT/scripts/compat-requirements.txt"
ensure_venv() {
    local stamp="$COMPAT_VENV/.requirements"
    if [ -x "$COMPAT_VENV/bin/python" ] && cmp -s "$REQS" "$stamp"; then return 0; fi
    log "creating $COMPAT_VENV from scripts/compat-requirements.txt"
    python3 -m venv "$COMPAT_VENV" || return 1
    "$COMPAT_VENV/bin/pip" install -q -r "$REQS" >&2 || return 1
    cp "$REQS" "$stamp"
}

# junit_to_results SUITE TARGET XML: appends one line per test to $RESULTS
junit_to_results() {
    python3 - "$1" "$2" "$3" >>"$RESULTS" <<'EOF'
import sys, xml.etree.ElementTree as ET
suite, target, path = sys.argv[1:]
def one_line(s):
    return " ".join((s or "").split())[:300]
# A test that fails in its call and again in its teardown has two <testcase> entries: merge
# them (failed > skipped > passed), keeping every reason.
tests = {}
rank = {"passed": 0, "skipped": 1, "failed": 2}
for tc in ET.parse(path).getroot().iter("testcase"):
    name = f"{tc.get('classname')}::{tc.get('name')}"
    outcome, reason = "passed", ""
    for child in tc:
        if child.tag in ("failure", "error"):
            outcome = "failed"
            msg = child.get("message") or ""
            if not msg.strip():
                lines = (child.text or "").strip().splitlines()
                msg = lines[-1] if lines else child.tag
            lines = [l for l in msg.strip().splitlines() if l.strip()]
            if len(lines) > 1 and "Traceback" in lines[0]:
                msg = lines[-1]   # the exception, not the stack
            reason = one_line(msg)
            break
        if child.tag == "skipped":
            outcome = "skipped"
            reason = one_line(child.get("message"))
    old = tests.get(name)
    if old is None:
        tests[name] = (outcome, reason)
    else:
        o = max(old[0], outcome, key=rank.get)
        r = "; ".join(x for x in (old[1], reason) if x)
        tests[name] = (o, r)
for name, (outcome, reason) in tests.items():
    print("\t".join([suite, target, name, outcome, reason.replace("\t", " ")[:500]]))
EOF
}

# run_pytest SUITE TARGET DIR LOG -- ARGS...: in DIR; records results; 0 if pytest ran
run_pytest() {
    local suite="$1" target="$2" dir="$3" logf="$4" rc xml="$COMPAT_OUT/$1-$2.xml"
    shift 5
    # shellcheck disable=SC2086
    (cd "$dir" && "$COMPAT_VENV/bin/python" -m pytest -p no:cacheprovider -q -rN \
        --timeout="$PY_TEST_TIMEOUT" --junitxml="$xml" -o junit_family=xunit1 "$@" $PYTEST_ARGS) \
        >"$logf" 2>&1
    rc=$?
    # 0: all passed, 1: some failed; anything else: pytest itself could not run the suite.
    if [ "$rc" -gt 1 ] || [ ! -s "$xml" ]; then
        tail -n 30 "$logf" >&2
        suite_error "$suite on $target: pytest exited $rc (log: $logf)"
        return 1
    fi
    junit_to_results "$suite" "$target" "$xml"
    log "$suite on $target: $(tail -n 1 "$logf")"
}

# --- pika ---------------------------------------------------------------------------------------------
run_pika() {
    local target="$1" w="$COMPAT_OUT/pika-$1" files f
    rm -rf "$w"
    mkdir -p "$w"
    start_amqp_target "$target" "$w/broker" || { suite_error "pika: could not start $target"; return; }
    # A copy of the checkout with the hard-coded broker address replaced.
    cp -a "$COMPAT_SRC/pika/." "$w/src/" 2>/dev/null || { mkdir -p "$w/src" && cp -a "$COMPAT_SRC/pika/." "$w/src/"; }
    rm -rf "$w/src/.git"
    sed -i -E "s/([^0-9])5672([^0-9])/\1$AMQP_PORT\2/g; s/host='localhost'/host='127.0.0.1'/g" \
        "$w"/src/tests/acceptance/*.py "$w"/src/tests/base/*.py
    grep -q "$AMQP_PORT" "$w/src/tests/acceptance/blocking_adapter_test.py" \
        || { suite_error "pika: could not substitute the port in blocking_adapter_test.py"; stop_target "$target"; return; }
    files=()
    for f in "$w"/src/tests/acceptance/*_test.py "$w"/src/tests/acceptance/*_tests.py; do
        # the twisted (and gevent/tornado) variants need those libraries
        case "$(basename "$f")" in twisted_*) "$COMPAT_VENV/bin/python" -c 'import twisted' 2>/dev/null || continue ;; esac
        files+=("tests/acceptance/$(basename "$f")")
    done
    log "pika on $target (127.0.0.1:$AMQP_PORT): ${files[*]}"
    run_pytest pika "$target" "$w/src" "$w/pytest.log" -- "${files[@]}"
    stop_target "$target"
}

# --- aio-pika -----------------------------------------------------------------------------------------
patch_aio_pika_conftest() { # FILE: skip Docker; the broker comes from AMQP_HOST / AMQP_PORT
    python3 - "$1" <<'EOF'
import sys
path = sys.argv[1]
src = open(path).read()
a = "def pytest_configure(config: pytest.Config) -> None:\n"
b = '@pytest.fixture(scope="session")\ndef rabbitmq_container(docker) -> ContainerInfo:\n'
if a not in src or b not in src:
    sys.exit("conftest.py does not have the expected pytest_configure / rabbitmq_container")
src = src.replace(a, a + "    if os.environ.get('AMQP_PORT'):  # compat.sh: no Docker\n        return\n", 1)
src = src.replace(b, '@pytest.fixture(scope="session")\ndef rabbitmq_container() -> ContainerInfo:\n'
    "    # compat.sh: an already running broker instead of a Docker container\n"
    "    return ContainerInfo(id='external', host=os.environ.get('AMQP_HOST', '127.0.0.1'),\n"
    "        ports={'5672/tcp': int(os.environ['AMQP_PORT']),\n"
    "               '5671/tcp': int(os.environ.get('AMQPS_PORT', '5671'))})\n\n\n"
    "def _unused_docker_rabbitmq_container(docker) -> ContainerInfo:\n", 1)
src = "import os\n" + src
open(path, "w").write(src)
EOF
}

run_aio_pika() {
    local target="$1" w="$COMPAT_OUT/aio-pika-$1"
    rm -rf "$w"
    mkdir -p "$w/src"
    start_amqp_target "$target" "$w/broker" || { suite_error "aio-pika: could not start $target"; return; }
    cp -a "$COMPAT_SRC/aio-pika/." "$w/src/"
    rm -rf "$w/src/.git"
    patch_aio_pika_conftest "$w/src/tests/conftest.py" \
        || { suite_error "aio-pika: could not patch tests/conftest.py"; stop_target "$target"; return; }
    # aio_pika reads its version from its installed metadata: install the checkout (no deps,
    # they are pinned in the venv) into a directory of this run only.
    "$COMPAT_VENV/bin/pip" install -q --no-deps --target "$w/site" "$COMPAT_SRC/aio-pika" >"$w/pip.log" 2>&1 \
        || { suite_error "aio-pika: pip install of the checkout failed (log: $w/pip.log)"; stop_target "$target"; return; }
    log "aio-pika on $target (127.0.0.1:$AMQP_PORT)"
    PYTHONPATH="$w/site" AMQP_HOST=127.0.0.1 AMQP_PORT="$AMQP_PORT" run_pytest aio-pika "$target" "$w/src" "$w/pytest.log" -- \
        -o log_cli=false tests
    stop_target "$target"
}

# --- librdkafka -----------------------------------------------------------------------------------------
build_librdkafka() {
    local src="$COMPAT_SRC/librdkafka" pkgs=() p
    [ -x "$src/tests/test-runner" ] && return 0
    for p in build-essential libssl-dev libsasl2-dev libzstd-dev liblz4-dev zlib1g-dev rapidjson-dev python3; do
        dpkg -s "$p" >/dev/null 2>&1 || pkgs+=("$p")
    done
    if [ "${#pkgs[@]}" -gt 0 ]; then
        log "installing librdkafka build deps: ${pkgs[*]}"
        apt_install "${pkgs[@]}" || return 1
    fi
    log "building librdkafka (./configure --disable-curl; make -j2; make -C tests build)"
    (cd "$src" && ./configure --disable-curl && make -j2 libs && make -C tests -j2 build) \
        >"$COMPAT_OUT/librdkafka-build.log" 2>&1 || { tail -n 30 "$COMPAT_OUT/librdkafka-build.log" >&2; return 1; }
}

run_librdkafka() {
    local target="$1" src="$COMPAT_SRC/librdkafka" w="$COMPAT_OUT/librdkafka-$1" n names rc t0 t1
    if [ "$target" != arctern ]; then
        log "librdkafka runs against arctern only (no Kafka here); skipping target $target"
        return
    fi
    build_librdkafka || { suite_error "librdkafka: build failed (log: $COMPAT_OUT/librdkafka-build.log)"; return; }
    rm -rf "$w"
    mkdir -p "$w/logs"
    # The tests and their flags, from the runner's own table.
    python3 - "$src/tests/test.c" >"$w/tests.tsv" <<'EOF' || { suite_error "librdkafka: cannot read tests/test.c"; return; }
import re, sys
src = open(sys.argv[1]).read()
body = src[src.index("struct test tests[]"):]
body = body[:body.index("};")]
for entry in re.split(r"^\s*_TEST\(", body, flags=re.M)[1:]:
    m = re.match(r"\s*(\w+)\s*,\s*([^,)]*)", entry)
    sc = re.search(r'\.scenario\s*=\s*"([^"]*)"', entry)
    print(f"{m.group(1)}\t{' '.join(m.group(2).split())}\t{sc.group(1) if sc else 'default'}")
EOF
    local numbers scenario config
    for scenario in default noautocreate; do
        # The suite's scenarios (tests/scenarios/*.json): the broker config each expects.
        case "$scenario" in
            default) config='"num.partitions" = 4' ;;
            noautocreate) config=$'"num.partitions" = 4\n"auto.create.topics.enable" = false' ;;
        esac
        numbers="${RDK_TESTS:-$(cut -f1 "$w/tests.tsv" | cut -c1-4 | sort -u | tr '\n' ' ')}"
        start_arctern "$w/broker-$scenario" "$config" "$RDK_NODES" || { suite_error "librdkafka: could not start arctern"; return; }
        printf 'bootstrap.servers=%s\n' "$ARCTERN_BOOTSTRAP" >"$w/test.conf"
        log "librdkafka on arctern ($ARCTERN_BOOTSTRAP), scenario $scenario, TEST_KAFKA_VERSION=$RDK_KAFKA_VERSION"
        for n in $numbers; do
            # Manual tests run whenever TESTS names them: leave them out, as a full run does.
            # Each test runs in the first scenario its .scenario names.
            names="$(awk -F'\t' -v n="$n" -v sc="$scenario" 'substr($1,1,4)==n && $2 !~ /TEST_F_MANUAL/ {
                split($3, a, ","); if (a[1] == sc) print $1}' "$w/tests.tsv")"
            [ -n "$names" ] || continue
            rdk_run_one "$n" "$scenario" "$config" $names || return
        done
        stop_arctern
    done
}

# rdk_run_one NUMBER SCENARIO CONFIG NAMES...: one test-runner process; appends to $RESULTS
rdk_run_one() {
    local n="$1" scenario="$2" config="$3" rc t0 t1 logf
    shift 3
    logf="$w/logs/$n$([ "$scenario" = default ] || echo "-$scenario").log"
    if ! arctern_alive; then
        log "arctern died before test $n; restarting it (its logs kept in broker-died-before-$n)"
        cp -r "$w/broker-$scenario" "$w/broker-died-before-$n" 2>/dev/null
        rm -rf "$w/broker-died-before-$n"/data "$w/broker-died-before-$n"/node-*/data
        echo "$n" >>"$w/broker-deaths"
        stop_arctern
        start_arctern "$w/broker-$scenario" "$config" "$RDK_NODES" || { suite_error "librdkafka: could not restart arctern"; return 1; }
        printf 'bootstrap.servers=%s\n' "$ARCTERN_BOOTSTRAP" >"$w/test.conf"
    fi
    t0=$(date +%s)
    # (The outer 2>/dev/null only silences bash's "Aborted" notice: the runner aborts after
    # most failures; its own output is in $logf.)
    { (cd "$src/tests" && LD_LIBRARY_PATH="$src/src:$src/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        RDKAFKA_TEST_CONF="$w/test.conf" TEST_KAFKA_VERSION="$RDK_KAFKA_VERSION" TEST_SCENARIO="$scenario" \
        TESTS="$n" timeout -k 10 "$RDK_TEST_TIMEOUT" ./test-runner -p1 -E -L) >"$logf" 2>&1; } 2>/dev/null
    rc=$?
    t1=$(date +%s)
    if [ "$rc" = 126 ] || [ "$rc" = 127 ]; then
        tail -n 5 "$logf" >&2
        suite_error "librdkafka: test-runner could not be started (exit $rc, log: $logf)"
        stop_arctern
        return 1
    fi
    rdk_parse "$logf" "$rc" "$((t1 - t0))" "$@" >"$logf.result"
    cat "$logf.result" >>"$RESULTS"
    log "librdkafka $n: $(cut -f3,4 "$logf.result" | tr '\t\n' ': ')($((t1 - t0)) s)"
}

# rdk_parse LOG RC SECONDS NAMES...: one result line per test from the runner's summary table
rdk_parse() {
    python3 - "$1" "$2" "$3" "$RDK_TEST_TIMEOUT" "${@:4}" <<'EOF'
import re, sys
path, rc, secs, limit, *names = sys.argv[1:]
text = re.sub(r"\x1b\[[0-9;]*m", "", open(path, errors="replace").read())
last = {}
for m in re.finditer(r"^\|[ \t]*(\S+)[ \t]*\|[ \t]*([A-Z_]+)[ \t]*\|[ \t]*([\d.]+)s[ \t]*\|[ \t]?(.*)$", text, re.M):
    last[m.group(1)] = (m.group(2), m.group(3), m.group(4).strip())
# The first failure report of each test: '### Test "NAME (subtest)" failed at FILE:LINE:FUNC() at DATE: ###'
# and the message on the next line.
first_fail = {}
for m in re.finditer(r'^### Test "(\S+)([^"]*)" failed at (\S+?)\(\) at [^#]*###\n(.*)$', text, re.M):
    first_fail.setdefault(m.group(1), f"{m.group(2).strip()} {m.group(3)}: {m.group(4).strip()}".strip())
for name in names:
    state, dur, why = last.get(name, (None, secs, ""))
    if state is None:
        # No summary table (the runner aborted, e.g. on threads left behind by a failed
        # test, or was killed): read the test's own start / skip / pass lines.
        skip = re.search(rf"^\[{re.escape(name)}\s*/[^\]]*\] WARN: SKIPPING TEST: (.*)$", text, re.M)
        if skip:
            state, why = "SKIPPED", skip.group(1)
        elif re.search(rf"^=+ Test {re.escape(name)} PASSED =+$", text, re.M) and name not in first_fail:
            state = "PASSED"
    if state is None:
        if rc in ("124", "137") and int(secs) >= int(limit):
            outcome, why = "failed", f"killed after {limit} s (compat.sh's per-test timeout)"
        elif int(rc) > 128:
            outcome, why = "failed", f"test-runner died of signal {int(rc) - 128} without a summary"
        else:
            outcome, why = "failed", f"test-runner exited {rc} without a summary"
        if name in first_fail:
            why += "; first failure: " + first_fail[name]
    elif state == "PASSED":
        outcome = "passed"
    elif state == "SKIPPED":
        # local / sockem tests are filtered by -L / -E: not part of the measure
        outcome = "excluded" if "negative test flags" in why else "skipped"
    elif state in ("DNS", "NOT_STARTED"):
        outcome, why = "excluded", why or "not started"
    else:  # FAILED, RUNNING (timed out in the runner)
        outcome = "failed"
        if name in first_fail and first_fail[name] not in why:
            why = f"{why}; first failure: {first_fail[name]}" if why else first_fail[name]
    print("\t".join(["librdkafka", "arctern", name, outcome, f"[{float(dur):.1f}s] {' '.join(why.split())}"[:400]]))
EOF
}

# --- run ------------------------------------------------------------------------------------------------
for s in "${SUITES[@]}"; do
    case "$s" in
        pika | aio-pika)
            ensure_venv || { suite_error "$s: could not create the venv $COMPAT_VENV"; continue; }
            for t in $TARGETS; do
                case "$s" in pika) run_pika "$t" ;; aio-pika) run_aio_pika "$t" ;; esac
            done
            ;;
        librdkafka) want_target arctern && run_librdkafka arctern ;;
    esac
done

# --- report -----------------------------------------------------------------------------------------------
commits=""
for s in "${SUITES[@]}"; do
    commits+="$s=$(git -C "$COMPAT_SRC/$s" rev-parse HEAD 2>/dev/null || echo unknown)@$(git -C "$COMPAT_SRC/$s" describe --tags 2>/dev/null || echo '?') "
done
python3 - "$RESULTS" "$commits" "$BIN (this checkout: $(git rev-parse --short HEAD 2>/dev/null || echo unknown))" <<'EOF' | tee "$COMPAT_OUT/summary.txt"
import collections, sys
path, commits, arctern_commit = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
by = collections.defaultdict(dict)           # (suite, target) -> test -> (outcome, reason)
for suite, target, name, outcome, reason in rows:
    by[(suite, target)][name] = (outcome, reason)
print(f"\nArctern binary {arctern_commit}; suites: {commits}")
print(f"\n{'suite':<12} {'target':<9} {'passed':>7} {'failed':>7} {'skipped':>8}")
suites = []
for (suite, target) in by:
    if suite not in suites:
        suites.append(suite)
for suite in suites:
    for target in ("rabbitmq", "arctern"):
        t = by.get((suite, target))
        if t is None:
            continue
        c = collections.Counter(o for o, _ in t.values())
        extra = f"   ({c['excluded']} local/sockem not counted)" if c["excluded"] else ""
        print(f"{suite:<12} {target:<9} {c['passed']:>7} {c['failed']:>7} {c['skipped']:>8}{extra}")
for suite in suites:
    a = by.get((suite, "arctern"))
    r = by.get((suite, "rabbitmq"))
    if a is None:
        continue
    if r is not None:
        diff = [n for n, (o, _) in r.items() if o == "passed" and a.get(n, ("missing",))[0] != "passed"]
        print(f"\n{suite}: pass on RabbitMQ, fail on Arctern ({len(diff)}):")
        for n in sorted(diff):
            o, why = a.get(n, ("missing", "not run on arctern"))
            print(f"  {n}  [{o}] {why}")
        back = [n for n, (o, _) in a.items() if o == "passed" and r.get(n, ("missing",))[0] == "failed"]
        if back:
            print(f"{suite}: pass on Arctern, fail on RabbitMQ ({len(back)}): " + ", ".join(sorted(back)))
    else:
        fails = sorted(n for n, (o, _) in a.items() if o == "failed")
        print(f"\n{suite}: fail on Arctern ({len(fails)}; no reference broker here, expected to pass on Kafka):")
        for n in fails:
            print(f"  {n}  {a[n][1]}")
        skips = sorted(n for n, (o, _) in a.items() if o == "skipped")
        if skips:
            print(f"{suite}: skipped on Arctern ({len(skips)}):")
            for n in skips:
                print(f"  {n}  {a[n][1]}")
EOF
log "results: $RESULTS, summary: $COMPAT_OUT/summary.txt"
if [ "${#SUITE_ERRORS[@]}" -gt 0 ]; then
    printf 'compat.sh: could not run:\n' >&2
    printf '  %s\n' "${SUITE_ERRORS[@]}" >&2
    exit 1
fi
exit 0
