"""Ingest benchmark: 100,000 rows shaped like all_data_info.csv into PostgreSQL.

Side by side in one run, three rounds (each: the project's path, painting_ml.data.ingest.load_rows,
on an emptied table — a data root's first load, so a binary COPY straight into the catalog;
re-ingesting the same 100,000 rows — COPY into a staging table, rewrite changed rows, insert new
ones, mark missing ones gone: the idempotent upsert; then row-by-row INSERT of the same rows in one
transaction, timed on a 5,000-row sample and scaled), the median of the three rounds' ratios last;
pandas.DataFrame.to_sql once for reference. The image probing of a real ingest is not part of
this: it measures the database path only.

    .venv/bin/python bench/ingest.py [--rows 100000] [--rounds 3]

Targets: COPY >= 50,000 rows/s and >= 20x row-by-row (median of the rounds); re-ingest >= 25,000 rows/s.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import machine, scratch_database


def make_rows(n: int) -> list:
    """Catalog rows with Kaggle-like values (commas, quotes, accents)."""
    from painting_ml.data.ingest import CatalogRow

    rows = []
    for i in range(n):
        rows.append(CatalogRow(
            filename=f"{i + 1}.jpg", artist=f"Artist Ñº{i % 2300}", title=f'Study of "Light", No. {i % 97}',
            style="Impressionism", genre="landscape", date=f"c.{1800 + i % 200}", source="wikiart",
            artist_group="train_and_test", in_train=i % 5 != 0, meta_width=1200 + i % 800,
            meta_height=900 + i % 600, size_bytes=150_000 + i, data_root="/data/painter-by-numbers",
            rel_path=f"train_{i % 9 + 1}/{i + 1}.jpg", width=1200 + i % 800, height=900 + i % 600, mode="RGB",
            source_csv="all_data_info.csv", reduced_path=None,
        ))
    return rows


def main() -> None:
    import pandas as pd
    import psycopg
    import sqlalchemy

    from painting_ml.core import db
    from painting_ml.data import ingest as catalog

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--sample", type=int, default=5_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rows = make_rows(args.rows)
    cols = list(catalog.PAINTING_COLUMNS)
    print(f"{args.rows} rows shaped like all_data_info.csv; {machine()}", flush=True)

    copy_s, again_s, row_s = [], [], []
    insert = (f"INSERT INTO paintings ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
              "ON CONFLICT (data_root, filename) DO NOTHING")
    sample = rows[: args.sample]
    with scratch_database() as url:
        for r in range(1, args.rounds + 1):
            with db.connect(url) as conn:
                conn.execute("TRUNCATE paintings, rejects CASCADE")
            t = time.perf_counter()
            with db.connect(url) as conn:
                catalog.load_rows(conn, rows, [], "all_data_info.csv", "/data/painter-by-numbers")
            copy_s.append(time.perf_counter() - t)

            t = time.perf_counter()
            with db.connect(url) as conn:
                totals = catalog.load_rows(conn, rows, [], "all_data_info.csv", "/data/painter-by-numbers")
            total = totals.paintings_total
            again_s.append(time.perf_counter() - t)
            assert total == args.rows, "re-ingest changed the row count"

            with db.connect(url) as conn:
                conn.execute("TRUNCATE paintings CASCADE")
            t = time.perf_counter()
            with psycopg.connect(url) as conn:
                for row in sample:
                    conn.execute(insert, row)
            row_s.append((time.perf_counter() - t) * args.rows / len(sample))
            print(f"round {r}: first load (COPY) {args.rows / copy_s[-1]:8,.0f} rows/s ({copy_s[-1]:.2f} s); "
                  f"re-ingest {args.rows / again_s[-1]:8,.0f} rows/s ({again_s[-1]:.2f} s, count unchanged); "
                  f"row-by-row INSERT {args.rows / row_s[-1]:6,.0f} rows/s ({len(sample)} rows timed, "
                  f"scaled: {row_s[-1]:.1f} s); ratio {row_s[-1] / copy_s[-1]:.1f}x", flush=True)

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
        print(f"pandas.to_sql (once):       {args.rows / pandas_s:10,.0f} rows/s ({pandas_s:.2f} s)", flush=True)

    ratios = [r / c for r, c in zip(row_s, copy_s, strict=True)]
    copy_m, again_m = statistics.median(copy_s), statistics.median(again_s)
    print(f"RATIO COPY/row-by-row per round {', '.join(f'{x:.1f}x' for x in ratios)}; "
          f"median {statistics.median(ratios):.1f}x (target >= 20x), COPY/to_sql {pandas_s / copy_m:.1f}x; "
          f"COPY {args.rows / copy_m:,.0f} rows/s (median; target >= 50,000); re-ingest {args.rows / again_m:,.0f} "
          "rows/s (median; target >= 25,000)")


if __name__ == "__main__":
    main()
