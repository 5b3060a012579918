-- description: The learning curve of one run: loss, accuracy and learning rate per epoch (the latest run by default; a label audit's fold runs are never the default).
-- param: run_id int = latest
SELECT epoch, phase, round(loss::numeric, 4) AS loss, round(accuracy::numeric, 3) AS accuracy,
       round(val_loss::numeric, 4) AS val_loss, round(val_accuracy::numeric, 3) AS val_accuracy,
       learning_rate, round(seconds::numeric, 1) AS seconds
FROM epochs
WHERE run_id = COALESCE(%(run_id)s, (SELECT max(id) FROM runs WHERE purpose = 'retrain'))
ORDER BY epoch;
