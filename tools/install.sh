#!/usr/bin/env bash
# Installs the system packages `make run` or `make test` needs, and only the missing ones.
#
#   tools/install.sh run    Python's venv, a Java 17+ runtime, Maven while the
#                           Elasticsearch distribution is not fetched yet, Node.js and npm
#                           (GraphiQL's assets)
#   tools/install.sh test   all of that, PostgreSQL and Chromium (the browser tests)
#
# Debian packages through apt-get, as root or with sudo; where neither works it
# prints the exact command to run and fails. Nothing missing: no apt-get at all,
# so calling it before every `make run` and `make test` costs a few checks.
# `make run`, `make test` and `.ci/run` call it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
purpose=${1:-test}
case $purpose in
run | test) ;;
*)
    echo "usage: $0 run|test" >&2
    exit 2
    ;;
esac

java_major() {
    # `java -version` prints e.g.: openjdk version "17.0.15" 2025-04-15
    local major
    major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
    echo "${major:-0}"
}

venv_works() {
    # Debian's python3 without python3-venv (which holds ensurepip) makes venvs without pip.
    [[ -x .venv/bin/python ]] && .venv/bin/python -m pip --version >/dev/null 2>&1 && return 0
    python3 -c 'import ensurepip' >/dev/null 2>&1
}

elasticsearch_fetched() {
    # Maven is only the way the distribution arrives: once unpacked, it is not needed.
    python3 - <<'EOF' 2>/dev/null
import sys
from tools import search_node as node
home = node._cache_root() / f"elasticsearch-{node.DEFAULT_VERSION}"
sys.exit(0 if (home / "bin" / "elasticsearch").is_file() else 1)
EOF
}

packages=()
command -v make >/dev/null || packages+=(make)
if ! command -v python3 >/dev/null; then
    packages+=(python3 python3-venv)
elif ! venv_works; then
    packages+=(python3-venv)
fi
# Elasticsearch 8.19 needs Java 17 or newer (the zip the project uses ships no JDK).
if ! command -v java >/dev/null || (($(java_major) < 17)); then
    packages+=(openjdk-17-jre-headless)
fi
if ! command -v mvn >/dev/null && ! elasticsearch_fetched; then
    packages+=(maven)
fi
# npm fetches GraphiQL's pinned assets (api/static/vendor) and the JS client tests' tools.
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
if [[ $purpose == test ]]; then
    if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
        packages+=(postgresql)
    elif ! compgen -G '/usr/lib/postgresql/*/bin/psql' >/dev/null && ! command -v psql >/dev/null; then
        packages+=(postgresql-client)
    fi
    # The browser tests drive Debian's Chromium through Playwright (tests/e2e/test_browser.py).
    [[ -x /usr/bin/chromium ]] || packages+=(chromium)
fi

if ((${#packages[@]} == 0)); then
    exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null; then
    as_root=(sudo)
else
    echo "Missing system packages: ${packages[*]}" >&2
    echo "Neither root nor sudo here; as root, run:" >&2
    if [[ " ${packages[*]} " == *" postgresql "* ]]; then
        echo "  mkdir -p /etc/postgresql-common/createcluster.d &&" \
            "echo 'create_main_cluster = false' >" \
            "/etc/postgresql-common/createcluster.d/50-no-main-cluster.conf" >&2
    fi
    echo "  apt-get update && apt-get install -y --no-install-recommends ${packages[*]}" >&2
    exit 1
fi

echo "installing: ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
if [[ " ${packages[*]} " == *" postgresql "* ]]; then
    # The suite starts its own throwaway servers; no system cluster on :5432.
    "${as_root[@]}" mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' |
        "${as_root[@]}" tee /etc/postgresql-common/createcluster.d/50-no-main-cluster.conf >/dev/null
fi
if ! "${as_root[@]}" apt-get update -qq ||
    ! "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"; then
    echo "Could not install: ${packages[*]}; run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${packages[*]}" >&2
    exit 1
fi
