-- Scoring the catalog with the champion (painting_ml.results.attribution).

-- name: count_pending
-- Usable paintings the run has not scored, or scored before the painting's row last changed.
SELECT count(*) AS pending
FROM paintings p
WHERE p.gone_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM attribution_scores s
                  WHERE s.run_id = %(run)s AND s.data_root = p.data_root AND s.filename = p.filename
                    AND s.scored_at >= p.ingested_at);

-- name: pending_shard
-- The same paintings, split into `shards` stable parts by a hash of the painting's key.
SELECT p.data_root, p.filename, p.artist, COALESCE(p.reduced_path, p.data_root || '/' || p.rel_path) AS path
FROM paintings p
WHERE p.gone_at IS NULL
  AND mod(hashtext(p.data_root || '/' || p.filename) & 2147483647, %(shards)s) = %(shard)s
  AND NOT EXISTS (SELECT 1 FROM attribution_scores s
                  WHERE s.run_id = %(run)s AND s.data_root = p.data_root AND s.filename = p.filename
                    AND s.scored_at >= p.ingested_at)
ORDER BY p.data_root, p.filename;

-- name: create_staging
-- One chunk of scores on its way in (binary COPY), upserted by upsert_staged.
CREATE TEMP TABLE staging_scores ON COMMIT DROP AS
SELECT run_id, data_root, filename, artists, probabilities, label_probability, embedding
FROM attribution_scores WITH NO DATA;

-- name: copy_staging
COPY staging_scores (run_id, data_root, filename, artists, probabilities, label_probability, embedding)
FROM STDIN (FORMAT BINARY);

-- name: upsert_staged
INSERT INTO attribution_scores (run_id, data_root, filename, artists, probabilities, label_probability, embedding)
SELECT run_id, data_root, filename, artists, probabilities, label_probability, embedding FROM staging_scores
ON CONFLICT (run_id, data_root, filename) DO UPDATE SET
    artists = EXCLUDED.artists, probabilities = EXCLUDED.probabilities,
    label_probability = EXCLUDED.label_probability, embedding = EXCLUDED.embedding, scored_at = now();

-- name: scored_count
SELECT count(*) AS scored, max(array_length(embedding, 1)) AS dims FROM attribution_scores WHERE run_id = %(run)s;

-- name: vector_index
SELECT painting_vector_index(%(run)s, %(dims)s) AS indexed;

-- name: vector_search
SELECT painting_vector_search() AS enabled;

-- name: delete_centroids
DELETE FROM artist_centroids WHERE run_id = %(run)s;

-- name: insert_centroids
-- Mean of the unit-length embeddings per catalog artist, scaled back to unit length.
WITH means AS (
    SELECT p.artist, t.i, avg(t.x) AS x, count(*) AS n
    FROM attribution_scores s
    JOIN paintings p ON p.data_root = s.data_root AND p.filename = s.filename
    CROSS JOIN LATERAL unnest(s.embedding) WITH ORDINALITY AS t(x, i)
    WHERE s.run_id = %(run)s AND p.gone_at IS NULL
    GROUP BY p.artist, t.i
), norms AS (
    SELECT artist, sqrt(sum(x * x)) AS norm FROM means GROUP BY artist
)
INSERT INTO artist_centroids (run_id, artist, paintings, centroid)
SELECT %(run)s, m.artist, max(m.n), array_agg(m.x / n.norm ORDER BY m.i)
FROM means m JOIN norms n ON n.artist = m.artist
WHERE n.norm > 0
GROUP BY m.artist;

-- name: nearest
-- The k catalog paintings closest to a (unit-length) embedding, with their catalog artist.
SELECT n.data_root, n.filename, p.artist, n.distance,
       COALESCE(p.reduced_path, p.data_root || '/' || p.rel_path) AS path
FROM painting_nearest(%(run)s, %(query)s::double precision[], %(k)s) n
JOIN paintings p ON p.data_root = n.data_root AND p.filename = n.filename
ORDER BY n.distance, n.data_root, n.filename;

-- name: flagged
-- The paintings worth a second look (the possible_misattributions query, as rows by name).
SELECT data_root, filename, catalog_artist, catalog_artist_probability, rival_artist, rival_probability, path
FROM attribution_rivals
WHERE run_id = %(run)s AND catalog_artist_probability < %(p)s AND rival_probability > %(q)s
ORDER BY rival_probability - catalog_artist_probability DESC, data_root, filename
LIMIT %(limit)s;

-- name: typical
-- An artist's paintings the run is surest of: catalogued as that artist and attributed to them.
SELECT path, filename, probability FROM attributions
WHERE run_id = %(run)s AND catalog_artist = %(artist)s AND attributed_artist = %(artist)s
ORDER BY probability DESC, data_root, filename
LIMIT %(n)s;

-- name: delete_artifacts_of_kind
-- A set of files that is re-rendered as a whole (the second-look mosaics) replaces its rows.
DELETE FROM artifacts WHERE run_id = %(run)s AND kind = %(kind)s;

-- name: demo_summary
-- What `make demo` prints after the attribution DAG: the champion's scored paintings and how many
-- labelled ones it doubts (catalog artist < 0.2, another > 0.6, as possible_misattributions).
SELECT c.run_id,
       (SELECT count(*) FROM attributions a WHERE a.run_id = c.run_id) AS scored,
       (SELECT count(*) FROM attribution_rivals r WHERE r.run_id = c.run_id
          AND r.catalog_artist_probability < 0.2 AND r.rival_probability > 0.6) AS doubted
FROM champion c;
