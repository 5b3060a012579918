-- description: The most recent runs side by side: backbone, optimizer, targets, epochs and headline metrics.
-- param: limit int = 10
SELECT run_id, status, backbone, optimizer, targets, fine_tune, image_size, epochs_run,
       round(best_val_accuracy::numeric, 3) AS best_val_acc, round(test_accuracy::numeric, 3) AS test_acc,
       round(top3_accuracy::numeric, 3) AS top3, round(macro_f1::numeric, 3) AS macro_f1,
       round(open_set_auroc::numeric, 3) AS open_set_auroc, is_champion
FROM run_comparison
ORDER BY run_id DESC
LIMIT %(limit)s;
