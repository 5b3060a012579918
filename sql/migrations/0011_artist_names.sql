-- Migration 0011: one name per artist, style and genre.
--
-- The catalog's artist, style and genre columns carry canonical names (see painting_ml.data.names);
-- this table keeps each data root's spellings as the CSV wrote them, with the canonical name each
-- one maps to and how many live paintings use it. An ingest rewrites the root's rows.

CREATE TABLE IF NOT EXISTS name_spellings (
    data_root  text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('artist', 'style', 'genre')),
    spelling   text NOT NULL,    -- as the CSV writes it (the artist trimmed)
    canonical  text NOT NULL,    -- the name the catalog carries
    paintings  integer NOT NULL CHECK (paintings > 0),
    PRIMARY KEY (data_root, kind, spelling)
);
