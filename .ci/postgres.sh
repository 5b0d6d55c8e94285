# Sourced by .ci/run (and usable by hand: `source .ci/postgres.sh`): start the installed Postgres 15,
# create a login role and a database for the tests (idempotently), and export dlt's credentials for them.
# Exports DESTINATION__POSTGRES__CREDENTIALS (TCP to 127.0.0.1) and CUSTOMERIO_TEST_POSTGRES=1.
# If Postgres cannot be started, nothing is exported and tests/test_postgres.py fails under CI=true.

_cio_pg_setup() {
  local version="${CIO_PG_VERSION:-15}" cluster="${CIO_PG_CLUSTER:-main}"
  local user="${CIO_PG_USER:-cio_loader}" password="${CIO_PG_PASSWORD:-cio_loader_pw}"
  local database="${CIO_PG_DATABASE:-cio_test}" port

  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "postgres.sh: pg_ctlcluster not found (install postgresql-15); Postgres tests cannot run" >&2
    return 1
  fi
  port="$(pg_lsclusters -h 2>/dev/null | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c {print $3}')"
  if [ -z "$port" ]; then
    echo "postgres.sh: no Postgres cluster $version/$cluster (see pg_lsclusters)" >&2
    return 1
  fi
  # `start` fails when the cluster already runs: only a cluster that is still down after it is an error
  pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start >/dev/null 2>&1 || true
  local tries=0
  until pg_isready -q -h 127.0.0.1 -p "$port"; do
    tries=$((tries + 1))
    if [ "$tries" -ge 30 ]; then
      echo "postgres.sh: Postgres $version/$cluster did not accept connections on 127.0.0.1:$port" >&2
      return 1
    fi
    sleep 1
  done

  local psql=(su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -p $port -d postgres")
  # role: create it once, reset its password every time (a changed CIO_PG_PASSWORD takes effect)
  "${psql[@]}" <<SQL || return 1
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$user') THEN
    CREATE ROLE "$user" LOGIN;
  END IF;
END
\$\$;
ALTER ROLE "$user" WITH LOGIN PASSWORD '$password';
SQL
  # database: CREATE DATABASE cannot run inside DO, so test first
  if [ "$(su postgres -c "psql -X -tA -p $port -d postgres -c \"SELECT 1 FROM pg_database WHERE datname = '$database'\"")" != "1" ]; then
    su postgres -c "psql -X -q -p $port -d postgres -c 'CREATE DATABASE \"$database\" OWNER \"$user\"'" || return 1
  fi

  export DESTINATION__POSTGRES__CREDENTIALS="postgresql://$user:$password@127.0.0.1:$port/$database"
  export CUSTOMERIO_TEST_POSTGRES=1
  echo "postgres.sh: Postgres $version/$cluster ready at 127.0.0.1:$port, database $database, role $user"
}

_cio_pg_setup || echo "postgres.sh: Postgres is NOT available; tests/test_postgres.py will skip (or fail when CI=true)" >&2
unset -f _cio_pg_setup
