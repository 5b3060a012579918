-- Migration 0015: the files an audit made (the curator's evidence and the audit report).
--
-- An audit is not a run, so its files are not in `artifacts` (keyed by run): they are listed here,
-- with the same columns, under the store keys audits/<audit id>/..., and go with their audit.

CREATE TABLE IF NOT EXISTS audit_artifacts (
    audit_id   integer NOT NULL REFERENCES audits (id) ON DELETE CASCADE,
    kind       text NOT NULL,                     -- evidence_painting, evidence_exemplar, evidence_heatmap, audit_report
    path       text NOT NULL,                     -- artifact store key
    bytes      bigint NOT NULL,
    sha256     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (audit_id, path)
);
