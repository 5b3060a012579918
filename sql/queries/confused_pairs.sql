-- description: The artist pairs a run confuses most (true artist predicted as another), with the share of the true artist's test paintings.
-- param: run_id int = latest
-- param: limit int = 10
SELECT true_artist, predicted_artist, count, round(share_of_true::numeric, 3) AS share_of_true
FROM confused_pairs
WHERE run_id = COALESCE(%(run_id)s, (SELECT run_id FROM latest_artist_metrics LIMIT 1))
ORDER BY count DESC, true_artist, predicted_artist
LIMIT %(limit)s;
