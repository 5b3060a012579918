-- Migration 0004: the champion's attribution of the whole catalog (top-k artists and an embedding
-- per painting), artist centroids, and nearest-neighbour search over the embeddings.
--
-- Nearest-neighbour search uses pgvector when the server ships it (the embedded pgserver
-- PostgreSQL does): a generated `vector` column and one HNSW index per scored run. Elsewhere
-- (a server without the extension, or a role that may not create it) the same functions compute
-- the cosine distance over the float8[] column: slower, same answers. Setting
-- `painting_ml.vector_search = off` for the database before migrating forces the array path.

-- One row per (run, painting) the run has scored. Embeddings are stored at unit length, so the
-- cosine distance of two paintings is 1 - their dot product.
CREATE TABLE IF NOT EXISTS attribution_scores (
    run_id            integer NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    data_root         text NOT NULL,
    filename          text NOT NULL,
    artists           text[] NOT NULL,             -- the top-k artists, most probable first
    probabilities     double precision[] NOT NULL, -- their probabilities
    label_probability double precision,            -- what the catalog's artist gets (NULL: not a class of the run)
    embedding         double precision[] NOT NULL, -- the run's embedding, L2-normalised
    scored_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, data_root, filename),
    -- A painting deleted from the catalog takes its scores with it (ingest deletes gone rows).
    FOREIGN KEY (data_root, filename) REFERENCES paintings (data_root, filename) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS attribution_scores_painting_idx ON attribution_scores (data_root, filename);

-- The mean embedding of each catalog artist's scored paintings (unit length), per run;
-- recomputed after each scoring.
CREATE TABLE IF NOT EXISTS artist_centroids (
    run_id    integer NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    artist    text NOT NULL,
    paintings integer NOT NULL,
    centroid  double precision[] NOT NULL,
    PRIMARY KEY (run_id, artist)
);

-- Cosine distance of two unit-length arrays.
CREATE OR REPLACE FUNCTION painting_cosine_distance(a double precision[], b double precision[])
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT 1 - sum(x * y) FROM unnest(a, b) AS t(x, y) $$;

-- The array path; replaced below when pgvector is there.
CREATE OR REPLACE FUNCTION painting_vector_search() RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT false $$;

-- The k paintings run `run` scored whose embeddings are closest (cosine) to `query` (unit length).
CREATE OR REPLACE FUNCTION painting_nearest(run integer, query double precision[], k integer)
RETURNS TABLE (data_root text, filename text, distance double precision) LANGUAGE sql STABLE AS $$
    SELECT s.data_root, s.filename, painting_cosine_distance(s.embedding, query) AS distance
    FROM attribution_scores s WHERE s.run_id = run
    ORDER BY 3, 1, 2 LIMIT k
$$;

-- Make sure run `run`'s embeddings (of `dims` dimensions) have a nearest-neighbour index; true
-- when one exists. The array path has none.
CREATE OR REPLACE FUNCTION painting_vector_index(run integer, dims integer) RETURNS boolean
LANGUAGE sql AS $$ SELECT false $$;

DO $migration$
BEGIN
    IF coalesce(current_setting('painting_ml.vector_search', true), '') = 'off'
       OR NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
        RAISE NOTICE 'pgvector not used: nearest-neighbour search scans float8[] embeddings';
        RETURN;
    END IF;
    BEGIN
        CREATE EXTENSION IF NOT EXISTS vector;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'pgvector is installed but this role may not create it; nearest-neighbour search scans arrays';
        RETURN;
    END;

    ALTER TABLE attribution_scores
        ADD COLUMN IF NOT EXISTS embedding_vec vector GENERATED ALWAYS AS (embedding::vector) STORED;

    CREATE OR REPLACE FUNCTION painting_vector_search() RETURNS boolean LANGUAGE sql IMMUTABLE AS $f$ SELECT true $f$;

    -- The column has no fixed dimension (it depends on the run's model), so each run gets a
    -- partial HNSW index on a cast to its dimension; queries repeat the cast and the run filter
    -- literally (dynamic SQL) so the planner can use it. pgvector 0.6 indexes up to 2000 dimensions;
    -- wider embeddings are scanned exactly with `<=>`.
    CREATE OR REPLACE FUNCTION painting_vector_index(run integer, dims integer) RETURNS boolean
    LANGUAGE plpgsql AS $f$
    DECLARE
        old record;
    BEGIN
        IF dims > 2000 THEN
            RETURN false;
        END IF;
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON attribution_scores USING hnsw '
                       '((embedding_vec::vector(%s)) vector_cosine_ops) WHERE run_id = %s',
                       'attribution_scores_hnsw_run_' || run, dims, run);
        -- Only the champion is searched: indexes of runs that are neither it nor `run` go.
        FOR old IN SELECT indexname FROM pg_indexes
                   WHERE tablename = 'attribution_scores' AND indexname LIKE 'attribution\_scores\_hnsw\_run\_%'
                     AND indexname <> 'attribution_scores_hnsw_run_' || run
                     AND indexname <> 'attribution_scores_hnsw_run_' || coalesce((SELECT c.run_id FROM champion c), -1)
        LOOP
            EXECUTE format('DROP INDEX IF EXISTS %I', old.indexname);
        END LOOP;
        RETURN true;
    END $f$;

    CREATE OR REPLACE FUNCTION painting_nearest(run integer, query double precision[], k integer)
    RETURNS TABLE (data_root text, filename text, distance double precision) LANGUAGE plpgsql AS $f$
    DECLARE
        dims integer := array_length(query, 1);
    BEGIN
        -- HNSW returns at most ef_search rows, and a wider search list finds more of the exact
        -- neighbours (recall@10 0.90 at pgvector's default of 40 on bench/attribute.py's data).
        PERFORM set_config('hnsw.ef_search', greatest(100, least(4 * k, 1000))::text, true);
        IF dims <= 2000 THEN
            RETURN QUERY EXECUTE format(
                'SELECT n.data_root, n.filename, n.distance FROM ('
                '  SELECT s.data_root, s.filename, (s.embedding_vec <=> $1)::double precision AS distance'
                '  FROM attribution_scores s WHERE s.run_id = %s'
                '  ORDER BY s.embedding_vec::vector(%s) <=> $1::vector(%s) LIMIT $2) n'
                ' ORDER BY 3, 1, 2', run, dims, dims) USING query::vector, k;
        ELSE
            RETURN QUERY
                SELECT s.data_root, s.filename, (s.embedding_vec <=> query::vector)::double precision
                FROM attribution_scores s WHERE s.run_id = run ORDER BY 3, 1, 2 LIMIT k;
        END IF;
    END $f$;
END
$migration$;

-- Each painting a run scored: its top-k beside the catalog's artist.
CREATE OR REPLACE VIEW attributions AS
SELECT s.run_id, s.data_root, s.filename, p.artist AS catalog_artist,
       s.label_probability IS NOT NULL AS catalog_artist_in_model,
       s.artists[1] AS attributed_artist, s.probabilities[1] AS probability,
       s.label_probability AS catalog_artist_probability,
       s.artists AS top_artists, s.probabilities AS top_probabilities,
       COALESCE(p.reduced_path, p.data_root || '/' || p.rel_path) AS path, s.scored_at
FROM attribution_scores s JOIN paintings p ON p.data_root = s.data_root AND p.filename = s.filename
WHERE p.gone_at IS NULL;

-- Labelled paintings (the catalog's artist is one of the run's classes) with the probability their
-- label gets and the most probable other artist ("rival") with its probability.
CREATE OR REPLACE VIEW attribution_rivals AS
SELECT a.run_id, a.data_root, a.filename, a.catalog_artist, a.catalog_artist_probability,
       r.artist AS rival_artist, r.probability AS rival_probability, a.path
FROM attributions a
CROSS JOIN LATERAL (
    SELECT u.artist, u.probability
    FROM unnest(a.top_artists, a.top_probabilities) WITH ORDINALITY AS u(artist, probability, i)
    WHERE u.artist <> a.catalog_artist ORDER BY u.i LIMIT 1) r
WHERE a.catalog_artist_in_model;

-- Every pair of artists a run scored, by the cosine distance of their mean embeddings.
CREATE OR REPLACE VIEW artist_neighbours AS
SELECT a.run_id, a.artist, b.artist AS neighbour, painting_cosine_distance(a.centroid, b.centroid) AS distance,
       a.paintings, b.paintings AS neighbour_paintings
FROM artist_centroids a JOIN artist_centroids b ON b.run_id = a.run_id AND b.artist <> a.artist;
