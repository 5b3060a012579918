-- description: Per-artist precision, recall, F1, support and accuracy of one run (the latest evaluated run by default).
-- param: run_id int = latest
SELECT m.artist, round(m.precision::numeric, 3) AS precision, round(m.recall::numeric, 3) AS recall,
       round(m.f1::numeric, 3) AS f1, m.support, round(m.accuracy::numeric, 3) AS accuracy
FROM artist_metrics m
WHERE m.run_id = COALESCE(%(run_id)s, (SELECT run_id FROM latest_artist_metrics LIMIT 1))
ORDER BY m.f1 DESC, m.artist;
