-- Statements used by painting_ml.data.identity: duplicate pairs and groups of one data root.

-- name: hashes
-- Every painting of the root with its hashes (gone ones too: a group keeps its history).
SELECT filename, sha256, phash FROM paintings
WHERE data_root = %(root)s AND phash IS NOT NULL ORDER BY filename;

-- name: delete_pairs
DELETE FROM duplicate_pairs WHERE data_root = %(root)s;

-- name: delete_pairs_of
DELETE FROM duplicate_pairs WHERE data_root = %(root)s AND (a = ANY(%(names)s) OR b = ANY(%(names)s));

-- name: insert_pairs
INSERT INTO duplicate_pairs (data_root, a, b, kind, distance)
SELECT %(root)s, p.a, p.b, p.kind, p.distance
FROM unnest(%(a)s::text[], %(b)s::text[], %(kind)s::text[], %(distance)s::smallint[]) AS p(a, b, kind, distance)
ON CONFLICT (data_root, a, b) DO UPDATE SET kind = excluded.kind, distance = excluded.distance;

-- name: pairs
-- The root's pairs whose both paintings are still in the catalog.
SELECT d.a, d.b FROM duplicate_pairs d
WHERE d.data_root = %(root)s
  AND EXISTS (SELECT 1 FROM paintings p WHERE p.data_root = d.data_root AND p.filename = d.a)
  AND EXISTS (SELECT 1 FROM paintings p WHERE p.data_root = d.data_root AND p.filename = d.b);

-- name: delete_groups
DELETE FROM painting_groups WHERE data_root = %(root)s;

-- name: insert_groups
INSERT INTO painting_groups (data_root, filename, group_key)
SELECT %(root)s, g.filename, g.group_key FROM unnest(%(filename)s::text[], %(group_key)s::text[]) AS g(filename, group_key);

-- name: groups_of_root
-- Each live painting of the root in a group, with its group and the artist training would use
-- (a curator's relabel of one copy and not its twin is a conflict: one picture, two labels).
SELECT g.filename, g.group_key, COALESCE(o.artist, p.artist) AS artist FROM painting_groups g
JOIN paintings p ON p.data_root = g.data_root AND p.filename = g.filename
LEFT JOIN label_overrides o ON o.data_root = p.data_root AND o.filename = p.filename
WHERE g.data_root = %(root)s AND p.gone_at IS NULL;

-- name: version_groups
-- The version's paintings that are in a duplicate group, with their split.
SELECT i.filename, i.split, g.group_key FROM dataset_items i
JOIN painting_groups g ON g.data_root = i.data_root AND g.filename = i.filename
WHERE i.version_id = %(id)s;

-- name: version_excluded
-- How many conflicting groups the version left out (0 when none were).
SELECT coalesce((config ->> 'excluded_conflicting_groups')::int, 0) AS n FROM dataset_versions WHERE id = %(id)s;

-- name: groups_of_folder
-- The root's groups, members first.
SELECT group_key, members, n_artists, max_distance FROM duplicate_groups
WHERE data_root = %(root)s ORDER BY group_key;
