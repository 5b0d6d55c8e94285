#!/usr/bin/env bash
# Run by .ci/run after the main tests: the Airflow and Dagster checks, each in its own virtualenv
# (.venv-airflow, .venv-dagster), because both orchestrators pin many dependencies of their own.
# Idempotent: a virtualenv is (re)installed only when its pins, pyproject.toml or the checkout path change.
# Ends with a pytest-style line "orchestration: N passed, N failed, N skipped"; exits non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PYTHON="${PYTHON:-python3}"

# Pins: Airflow 2.x (its constraint files are not on PyPI, so the few pins that matter are explicit),
# dagster-dlt 0.29.N goes with dagster 1.13.N, and dlt is the floor of this project's range (>=1.31,<2).
AIRFLOW_REQS=("apache-airflow==2.11.2" "dlt[duckdb,parquet]==1.31.0" "pytest>=8,<10" "requests>=2.31")
DAGSTER_REQS=("dagster==1.13.27" "dagster-dlt==0.29.27" "dlt[duckdb,parquet]==1.31.0" "pytest>=8,<10" "requests>=2.31")

LOGS="${CIO_ORCHESTRATION_LOGS:-${TMPDIR:-/tmp}/cio-orchestration-logs}"
mkdir -p "$LOGS"
started=$SECONDS

# ensure_venv DIR REQ... : create DIR and install REQs + this package, unless its stamp is current
ensure_venv() {
  local dir="$1"; shift
  local stamp="$dir/.cio-stamp" want
  want="$( { printf '%s\n' "$@" "$ROOT" "$("$PYTHON" --version 2>&1)"; cat pyproject.toml; } | sha256sum | cut -d' ' -f1)"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "orchestration: $dir is up to date"
    return 0
  fi
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir" || return 1
  "$dir/bin/python" -m pip install -q --upgrade pip || return 1
  "$dir/bin/python" -m pip install -q "$@" -e "$ROOT" || return 1
  echo "$want" > "$stamp"
}

echo "orchestration: preparing .venv-airflow and .venv-dagster (logs in $LOGS)"
ensure_venv .venv-airflow "${AIRFLOW_REQS[@]}" > "$LOGS/airflow-install.log" 2>&1 &
airflow_pid=$!
ensure_venv .venv-dagster "${DAGSTER_REQS[@]}" > "$LOGS/dagster-install.log" 2>&1 &
dagster_pid=$!
install_failed=0
wait "$airflow_pid" || { install_failed=1; echo "orchestration: installing .venv-airflow failed:"; tail -n 30 "$LOGS/airflow-install.log"; }
wait "$dagster_pid" || { install_failed=1; echo "orchestration: installing .venv-dagster failed:"; tail -n 30 "$LOGS/dagster-install.log"; }
echo "orchestration: virtualenvs ready after $((SECONDS - started))s"

passed=0 failed=0 skipped=0
# run_check NAME VENV FILE : pytest FILE in VENV, adding its junit counts to the totals
run_check() {
  local name="$1" venv="$2" file="$3" xml="$LOGS/$1.xml" rc=0
  if [ ! -x "$venv/bin/python" ]; then
    echo "orchestration: $name not run ($venv is missing)"
    failed=$((failed + 1))
    return
  fi
  echo "orchestration: $name ($file)"
  rm -f "$xml"
  (cd "$ROOT" && "$venv/bin/python" -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning \
    --junitxml="$xml" "$file") || rc=$?
  if [ ! -s "$xml" ]; then
    echo "orchestration: $name produced no results (pytest exit $rc)"
    failed=$((failed + 1))
    return
  fi
  read -r p f s < <("$venv/bin/python" - "$xml" <<'PY'
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
total = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(total - bad - skipped, bad, skipped)
PY
)
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1  # pytest failed without a failing test (collection or usage error)
  fi
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

if [ "$install_failed" -ne 0 ]; then
  failed=$((failed + 1))
fi
run_check airflow .venv-airflow tests/orchestration/airflow_check.py
run_check dagster .venv-dagster tests/orchestration/dagster_check.py
run_check airflow-workspaces .venv-airflow tests/orchestration/airflow_workspaces_check.py
run_check dagster-workspaces .venv-dagster tests/orchestration/dagster_workspaces_check.py

echo "orchestration: finished in $((SECONDS - started))s"
echo "orchestration: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
