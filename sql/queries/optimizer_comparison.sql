-- description: Optimizers compared on one dataset version: runs, best validation accuracy and test macro-F1 of each (the latest version a retrain made by default).
-- param: dataset_version_id int = latest
SELECT optimizer, count(*) AS runs, round(max(best_val_accuracy)::numeric, 3) AS best_val_acc,
       round(max(macro_f1)::numeric, 3) AS best_macro_f1, round(avg(test_accuracy)::numeric, 3) AS mean_test_acc
FROM run_comparison
WHERE dataset_version_id = COALESCE(%(dataset_version_id)s, (SELECT max(id) FROM dataset_versions WHERE purpose = 'retrain'))
GROUP BY optimizer
ORDER BY best_val_acc DESC NULLS LAST;
