-- Statements used by painting_ml.data.names: the spellings of a data root's text keys.

-- name: root_spellings
SELECT kind, spelling, canonical FROM name_spellings WHERE data_root = %(root)s;

-- name: delete_root_spellings
DELETE FROM name_spellings WHERE data_root = %(root)s;

-- name: insert_spellings
INSERT INTO name_spellings (data_root, kind, spelling, canonical, paintings)
SELECT %(root)s, s.kind, s.spelling, s.canonical, s.paintings
FROM unnest(%(kinds)s::text[], %(spellings)s::text[], %(canonicals)s::text[], %(paintings)s::int[])
     AS s(kind, spelling, canonical, paintings);
