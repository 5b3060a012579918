-- description: Labelled paintings whose catalog artist is doubtful. From the latest ranked label audit (out-of-fold probabilities ranked by cleanlab; paintings a curator settled left out) by rank; before any audit, or with run_id, those the champion (or run_id) gives < p while another artist gets > q (in-sample: it trained on most of them; p and q apply to this list only). source says which.
-- param: p float = 0.2
-- param: q float = 0.6
-- param: run_id int = latest
-- param: limit int = 50
WITH audited AS (
    SELECT i.filename, i.catalog_artist, i.suggested_artist, i.data_root, i.rank, i.audit_id, pr.probabilities,
           v.artists
    FROM review_queue i
    JOIN audits a ON a.id = i.audit_id
    JOIN dataset_versions v ON v.id = a.dataset_version_id
    JOIN audit_predictions pr ON pr.audit_id = i.audit_id AND pr.data_root = i.data_root AND pr.filename = i.filename
    WHERE %(run_id)s::int IS NULL AND NOT i.orphaned
), listed AS (
    SELECT a.filename, a.catalog_artist,
           a.probabilities[(SELECT n FROM jsonb_array_elements_text(a.artists) WITH ORDINALITY e(name, n)
                            WHERE e.name = a.catalog_artist)] AS catalog_artist_probability,
           a.suggested_artist AS rival_artist,
           a.probabilities[(SELECT n FROM jsonb_array_elements_text(a.artists) WITH ORDINALITY e(name, n)
                            WHERE e.name = a.suggested_artist)] AS rival_probability,
           a.data_root, 'audit ' || a.audit_id || ' (out-of-fold)' AS source, a.rank::double precision AS ord
    FROM audited a
    UNION ALL
    SELECT r.filename, r.catalog_artist, r.catalog_artist_probability, r.rival_artist, r.rival_probability,
           r.data_root,
           CASE WHEN %(run_id)s::int IS NULL THEN 'champion (in-sample)'
                ELSE 'run ' || r.run_id || ' (in-sample)' END AS source,
           r.catalog_artist_probability - r.rival_probability AS ord
    FROM attribution_rivals r
    WHERE r.run_id = COALESCE(%(run_id)s, (SELECT run_id FROM champion))
      AND r.catalog_artist_probability < %(p)s AND r.rival_probability > %(q)s
      AND NOT EXISTS (SELECT 1 FROM audits b WHERE b.status = 'ranked' AND %(run_id)s::int IS NULL)
)
SELECT filename, catalog_artist, round(catalog_artist_probability::numeric, 3) AS catalog_artist_probability,
       rival_artist, round(rival_probability::numeric, 3) AS rival_probability, data_root, source
FROM listed
ORDER BY ord, data_root, filename
LIMIT %(limit)s;
