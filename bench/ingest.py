"""Ingest benchmark: 100,000 rows shaped like all_data_info.csv into PostgreSQL.

Side by side in one run: the project's path (COPY into a staging table + one upsert,
painting_ml.data.ingest.load_rows), row-by-row INSERT (timed on a 5,000-row sample and scaled), and
pandas.DataFrame.to_sql; then re-ingesting the same 100,000 rows (the idempotent upsert). The
image probing of a real ingest is not part of this: it measures the database path only.

    .venv/bin/python bench/ingest.py [--rows 100000]

Targets: COPY >= 50,000 rows/s and >= 20x row-by-row; re-ingest >= 25,000 rows/s.
"""

from __future__ import annotations

import argparse
import time

from _common import machine, scratch_database


def make_rows(n: int) -> list[tuple]:
    """Rows in catalog.PAINTING_COLUMNS order, with Kaggle-like values (commas, quotes, accents)."""
    rows = []
    for i in range(n):
        rows.append((
            f"{i + 1}.jpg", f"Artist Ñº{i % 2300}", f'Study of "Light", No. {i % 97}', "Impressionism",
            "landscape", f"c.{1800 + i % 200}", "wikiart", "train_and_test", i % 5 != 0, 1200 + i % 800,
            900 + i % 600, 150_000 + i, "/data/painter-by-numbers", f"train_{i % 9 + 1}/{i + 1}.jpg",
            1200 + i % 800, 900 + i % 600, "RGB", "all_data_info.csv", None,
        ))
    return rows


def main() -> None:
    import pandas as pd
    import psycopg
    import sqlalchemy

    from painting_ml.data import ingest as catalog
    from painting_ml.core import db

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--sample", type=int, default=5_000)
    args = ap.parse_args()
    rows = make_rows(args.rows)
    cols = catalog.PAINTING_COLUMNS
    print(f"{args.rows} rows shaped like all_data_info.csv; {machine()}", flush=True)

    with scratch_database() as url:
        with db.connect(url) as conn:
            conn.execute("TRUNCATE paintings, rejects CASCADE")
        t = time.perf_counter()
        with db.connect(url) as conn:
            catalog.load_rows(conn, rows, [], "all_data_info.csv", "/data/painter-by-numbers")
        copy_s = time.perf_counter() - t
        print(f"project COPY + upsert:      {args.rows / copy_s:10,.0f} rows/s ({copy_s:.2f} s)", flush=True)

        t = time.perf_counter()
        with db.connect(url) as conn:
            total = catalog.load_rows(conn, rows, [], "all_data_info.csv", "/data/painter-by-numbers")["paintings_total"]
        again_s = time.perf_counter() - t
        assert total == args.rows, "re-ingest changed the row count"
        print(f"re-ingest same rows:        {args.rows / again_s:10,.0f} rows/s ({again_s:.2f} s, count unchanged)", flush=True)

        with db.connect(url) as conn:
            conn.execute("TRUNCATE paintings CASCADE")
        insert = (f"INSERT INTO paintings ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
                  "ON CONFLICT (data_root, filename) DO NOTHING")
        sample = rows[: args.sample]
        t = time.perf_counter()
        with psycopg.connect(url) as conn:
            for row in sample:
                conn.execute(insert, row)
        row_s = (time.perf_counter() - t) * args.rows / len(sample)
        print(f"row-by-row INSERT:          {args.rows / row_s:10,.0f} rows/s "
              f"(timed on {len(sample)} rows, scaled: {row_s:.1f} s)", flush=True)

        with db.connect(url) as conn:
            conn.execute("TRUNCATE paintings CASCADE")
        frame = pd.DataFrame(rows, columns=cols)
        engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1)
                                          if url.startswith("postgresql://") else
                                          "postgresql+psycopg:///?" + "&".join(f"{k}={v}" for k, v in
                                                                               psycopg.conninfo.conninfo_to_dict(url).items()))
        t = time.perf_counter()
        frame.to_sql("paintings", engine, if_exists="append", index=False, chunksize=10_000)
        pandas_s = time.perf_counter() - t
        engine.dispose()
        print(f"pandas.to_sql:              {args.rows / pandas_s:10,.0f} rows/s ({pandas_s:.2f} s)", flush=True)

    print(f"RATIO COPY/row-by-row {row_s / copy_s:.1f}x (target >= 20x), COPY/to_sql {pandas_s / copy_s:.1f}x; "
          f"COPY {args.rows / copy_s:,.0f} rows/s (target >= 50,000); re-ingest {args.rows / again_s:,.0f} rows/s "
          "(target >= 25,000)")


if __name__ == "__main__":
    main()
