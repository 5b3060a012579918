-- description: The curators' label overrides in force: each relabelled painting with the CSV's artist and the curator's, who decided and when (the CSV stays the source of record; retrains use the curator's).
SELECT o.data_root, o.filename, p.title, p.artist AS csv_artist, o.artist AS curator_artist,
       o.reviewer, o.reviewed_at, o.review_id, r.note
FROM label_overrides o
JOIN label_reviews r ON r.id = o.review_id
LEFT JOIN paintings p ON p.data_root = o.data_root AND p.filename = o.filename
ORDER BY o.reviewed_at DESC, o.review_id DESC;
