"""Load a Customer.io workspace into DuckDB with dlt, as a plain script (the CLI does the same).

    CUSTOMERIO_APP_API_KEY=... python pipelines/customerio_pipeline.py
"""

from __future__ import annotations

import dlt

from customerio_source import customerio_source, load


def main() -> None:
    pipeline = dlt.pipeline(pipeline_name="customerio", destination="duckdb", dataset_name="customerio")
    source = customerio_source()  # key, region, tables... from .dlt/config.toml, secrets or the environment
    info = load(pipeline, source)
    print(info)


if __name__ == "__main__":
    main()
