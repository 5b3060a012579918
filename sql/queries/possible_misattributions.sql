-- description: Labelled paintings whose catalog artist gets probability < p from the champion (or run_id) while another artist gets > q: candidates for a curator's second look.
-- param: p float = 0.2
-- param: q float = 0.6
-- param: run_id int = latest
-- param: limit int = 50
SELECT filename, catalog_artist, round(catalog_artist_probability::numeric, 3) AS catalog_artist_probability,
       rival_artist, round(rival_probability::numeric, 3) AS rival_probability, data_root
FROM attribution_rivals
WHERE run_id = COALESCE(%(run_id)s, (SELECT run_id FROM champion))
  AND catalog_artist_probability < %(p)s AND rival_probability > %(q)s
ORDER BY rival_probability - catalog_artist_probability DESC, data_root, filename
LIMIT %(limit)s;
