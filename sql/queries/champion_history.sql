-- description: Every promotion decision, newest first: promoted or not, the F1 of candidate and champion, and why.
SELECT decision_id, decided_at, run_id, promoted, round(candidate_f1::numeric, 3) AS candidate_f1,
       champion_run_id, round(champion_f1::numeric, 3) AS champion_f1, is_current_champion,
       reasons
FROM champion_history
ORDER BY decided_at DESC, decision_id DESC;
