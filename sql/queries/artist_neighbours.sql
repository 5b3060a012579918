-- description: For each artist (or one), the k artists whose mean embeddings under the champion (or run_id) are closest, by cosine distance.
-- param: artist text = latest
-- param: k int = 5
-- param: run_id int = latest
SELECT artist, neighbour, rank, round(distance::numeric, 4) AS distance, paintings, neighbour_paintings
FROM (SELECT n.*, row_number() OVER (PARTITION BY n.artist ORDER BY n.distance, n.neighbour) AS rank
      FROM artist_neighbours n
      WHERE n.run_id = COALESCE(%(run_id)s, (SELECT run_id FROM champion))
        AND (%(artist)s::text IS NULL OR n.artist = %(artist)s::text)) ranked
WHERE rank <= %(k)s
ORDER BY artist, rank;
