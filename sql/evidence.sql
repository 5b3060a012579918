-- The curator's evidence for an audit's flagged paintings, and the audit report
-- (painting_ml.results.evidence).

-- name: audit
-- An audit with its counts: paintings audited (out-of-fold predictions) and flagged.
SELECT a.id, a.audit_key, a.dataset_version_id, a.data_root, a.folds, a.recipe, a.config, a.status, a.summary,
       a.started_at, a.finished_at, dv.artists,
       (SELECT count(*) FROM audit_predictions p WHERE p.audit_id = a.id) AS audited,
       (SELECT count(*) FROM label_issues i WHERE i.audit_id = a.id AND i.is_issue) AS flagged
FROM audits a JOIN dataset_versions dv ON dv.id = a.dataset_version_id
WHERE a.id = %(audit)s;

-- name: flagged
-- The flagged paintings by rank (the most likely mislabelled first), each with the fold model that
-- held it out, its embedding, its duplicate group and the out-of-fold probabilities and neighbour
-- votes of both artists (both in the order of the audit's dataset version artists; the votes NULL
-- for an audit from before migration 0016). limit NULL: all.
SELECT i.data_root, i.filename, i.catalog_artist, i.suggested_artist, i.quality, i.rank, i.evidence,
       p.fold, f.run_id, p.embedding, g.group_key,
       p.probabilities[(SELECT t.n::int FROM jsonb_array_elements_text(dv.artists) WITH ORDINALITY t(name, n)
                        WHERE t.name = i.catalog_artist)] AS catalog_probability,
       p.probabilities[(SELECT t.n::int FROM jsonb_array_elements_text(dv.artists) WITH ORDINALITY t(name, n)
                        WHERE t.name = i.suggested_artist)] AS suggested_probability,
       p.neighbour_votes[(SELECT t.n::int FROM jsonb_array_elements_text(dv.artists) WITH ORDINALITY t(name, n)
                          WHERE t.name = i.catalog_artist)] AS catalog_votes,
       p.neighbour_votes[(SELECT t.n::int FROM jsonb_array_elements_text(dv.artists) WITH ORDINALITY t(name, n)
                          WHERE t.name = i.suggested_artist)] AS suggested_votes
FROM label_issues i
JOIN audits a ON a.id = i.audit_id
JOIN dataset_versions dv ON dv.id = a.dataset_version_id
JOIN audit_predictions p ON p.audit_id = i.audit_id AND p.data_root = i.data_root AND p.filename = i.filename
LEFT JOIN audit_folds f ON f.audit_id = p.audit_id AND f.fold = p.fold
LEFT JOIN painting_groups g ON g.data_root = i.data_root AND g.filename = i.filename
WHERE i.audit_id = %(audit)s AND i.is_issue
ORDER BY i.rank NULLS LAST, i.quality, i.data_root, i.filename
LIMIT %(limit)s;

-- name: exemplar_candidates
-- The audited paintings labelled with one artist that may stand as its exemplars: not flagged
-- themselves (a suspect label is no example), with their duplicate group.
SELECT p.data_root, p.filename, p.embedding, g.group_key
FROM audit_predictions p
LEFT JOIN painting_groups g ON g.data_root = p.data_root AND g.filename = p.filename
WHERE p.audit_id = %(audit)s AND p.artist = %(artist)s
  AND NOT EXISTS (SELECT 1 FROM label_issues i
                  WHERE i.audit_id = p.audit_id AND i.data_root = p.data_root AND i.filename = p.filename
                    AND i.is_issue)
ORDER BY p.data_root, p.filename;

-- name: clear_evidence
UPDATE label_issues SET evidence = NULL WHERE audit_id = %(audit)s AND evidence IS NOT NULL;

-- name: set_evidence
UPDATE label_issues SET evidence = %(evidence)s
WHERE audit_id = %(audit)s AND data_root = %(data_root)s AND filename = %(filename)s;

-- name: artifacts_of_audit
SELECT kind, path, bytes, sha256 FROM audit_artifacts WHERE audit_id = %(audit)s ORDER BY path;

-- name: delete_artifacts
-- The audit's files of some kinds, before a re-render records the new set.
DELETE FROM audit_artifacts WHERE audit_id = %(audit)s AND kind = ANY(%(kinds)s);

-- name: upsert_artifact
INSERT INTO audit_artifacts (audit_id, kind, path, bytes, sha256)
VALUES (%(audit)s, %(kind)s, %(path)s, %(bytes)s, %(sha)s)
ON CONFLICT (audit_id, path) DO UPDATE SET kind = EXCLUDED.kind, bytes = EXCLUDED.bytes,
    sha256 = EXCLUDED.sha256, created_at = now();
