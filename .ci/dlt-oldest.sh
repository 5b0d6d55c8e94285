#!/usr/bin/env bash
# Run by .ci/run after the README's test command, which installs the newest dlt the declared range allows:
# the same tests against the oldest dlt the range allows (the floor in pyproject.toml), in .venv-dlt-oldest.
# When the newest release is the floor itself, the main run covered both and this says so.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

floor="$(sed -n 's/.*"dlt\[duckdb,parquet\]>=\([0-9.]*\),<[0-9.]*".*/\1/p' pyproject.toml | head -n 1)"
[ -n "$floor" ] || { echo "dlt-oldest: no dlt floor found in pyproject.toml"; exit 1; }
oldest="$floor"
case "$oldest" in *.*.*) ;; *) oldest="$oldest.0" ;; esac
newest="$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("dlt"))')"
if [ "$newest" = "$oldest" ]; then
  echo "dlt-oldest: the newest dlt release allowed ($newest) is the oldest supported: the main run covered both"
  exit 0
fi
echo "dlt-oldest: main run used dlt $newest; now the tests against dlt $oldest"
rm -rf .venv-dlt-oldest
"$PYTHON" -m venv .venv-dlt-oldest
.venv-dlt-oldest/bin/python -m pip install -q -e ".[dev]" "dlt[duckdb,parquet,postgres,bigquery]==$oldest"
.venv-dlt-oldest/bin/python -m pytest -q -p no:cacheprovider
