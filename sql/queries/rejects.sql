-- description: Why CSV rows were rejected at ingest, per data folder, file and reason, with the first and last line number.
SELECT data_root, source_csv, reason, n_rows, first_line, last_line
FROM reject_summary
ORDER BY data_root, source_csv, n_rows DESC, reason;
