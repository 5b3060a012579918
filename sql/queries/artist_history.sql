-- description: One artist's test F1 and accuracy across runs (did retraining help this painter?).
-- param: artist text
SELECT r.run_id, r.finished_at, r.backbone, r.optimizer, round(m.f1::numeric, 3) AS f1,
       round(m.accuracy::numeric, 3) AS accuracy, m.support
FROM artist_metrics m JOIN run_comparison r USING (run_id)
WHERE m.artist = %(artist)s
ORDER BY r.run_id;
