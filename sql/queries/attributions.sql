-- description: Each painting's top-k artists by the champion (or run_id), with the catalog's artist and the probability the model gives it.
-- param: run_id int = latest
-- param: artist text = latest
-- param: limit int = 100
SELECT filename, catalog_artist, attributed_artist, round(probability::numeric, 3) AS probability,
       round(catalog_artist_probability::numeric, 3) AS catalog_artist_probability,
       array_to_string(top_artists, ', ') AS top_artists, data_root
FROM attributions
WHERE run_id = COALESCE(%(run_id)s, (SELECT run_id FROM champion))
  AND (%(artist)s::text IS NULL OR catalog_artist = %(artist)s::text OR attributed_artist = %(artist)s::text)
ORDER BY data_root, filename
LIMIT %(limit)s;
