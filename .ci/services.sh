#!/usr/bin/env bash
# Services the test suite needs beyond Python: PostgreSQL on loopback (results store tests)
# and Debian's Chromium (web report tests). Installed from Debian's packages; run as root.
# Prints the environment the tests read, for `eval "$(.ci/services.sh)"`.
set -euo pipefail

need=()
# A server, not only the client (psql) that some images carry.
command -v pg_ctlcluster >/dev/null 2>&1 && compgen -G "/usr/lib/postgresql/*/bin/postgres" \
  >/dev/null || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ "${#need[@]}" -gt 0 ]; then
  echo "+ apt-get install ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The Debian cluster listens on 127.0.0.1:5432; a role and database for the tests only.
if [ -z "$(pg_lsclusters --no-header 2>/dev/null)" ]; then
  server=$(compgen -G "/usr/lib/postgresql/*/bin/postgres" | sort -V | tail -1)
  pg_createcluster "$(basename "$(dirname "$(dirname "$server")")")" main >&2
fi
pg_version=$(pg_lsclusters --no-header | awk 'NR==1{print $1}')
pg_cluster=$(pg_lsclusters --no-header | awk 'NR==1{print $2}')
pg_ctlcluster "$pg_version" "$pg_cluster" start >&2 2>/dev/null || true
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 && break
  sleep 1
done
su postgres -c "psql -q -v ON_ERROR_STOP=1" >&2 <<'SQL'
SELECT 'CREATE ROLE modelward LOGIN PASSWORD ''modelward'' CREATEDB'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'modelward')\gexec
SELECT 'CREATE DATABASE modelward_test OWNER modelward'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'modelward_test')\gexec
SQL

echo "export MODELWARD_TEST_POSTGRES=postgresql://modelward:modelward@127.0.0.1:5432/modelward_test"
echo "export MODELWARD_TEST_CHROMIUM=/usr/bin/chromium"
