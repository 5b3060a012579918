-- Migration 0016: each audited painting's nearest-neighbour vote.
--
-- Besides its probabilities, the fold model that never saw a painting also places it among the
-- paintings it trained on (their embeddings): the share of its k nearest training paintings that
-- carry each artist's label. cleanlab ranks label issues from these shares when every row has
-- them (audits made before this migration keep ranking by probabilities).

ALTER TABLE audit_predictions ADD COLUMN IF NOT EXISTS neighbour_votes double precision[];
