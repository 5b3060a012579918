-- description: The k catalog paintings closest to a painting (its file name) by the champion's embedding, cosine distance (pgvector index where available).
-- param: filename text
-- param: k int = 10
-- param: data_root text = latest
-- param: run_id int = latest
WITH q AS (
    SELECT s.run_id, s.data_root, s.filename, s.embedding FROM attribution_scores s
    WHERE s.run_id = COALESCE(%(run_id)s, (SELECT run_id FROM champion))
      AND s.filename = %(filename)s AND (%(data_root)s::text IS NULL OR s.data_root = %(data_root)s::text)
    ORDER BY s.data_root LIMIT 1
)
SELECT n.filename, p.artist, round(n.distance::numeric, 4) AS distance, n.data_root
FROM q CROSS JOIN LATERAL painting_nearest(q.run_id, q.embedding, %(k)s + 1) n
JOIN paintings p ON p.data_root = n.data_root AND p.filename = n.filename
WHERE NOT (n.data_root = q.data_root AND n.filename = q.filename)
ORDER BY n.distance, n.data_root, n.filename
LIMIT %(k)s;
