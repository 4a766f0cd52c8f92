"""Deployment: which model serves, how a challenger earns the slot, and how it loses it.

* ``model_config``  — the schema of ``model_config.json`` and its errors.
* ``registry``      — ``ModelRegistry``: the file, atomic, locked and journaled.
* ``champion``      — promote, roll back, recover (the one path that changes the champion, with
  the MLflow alias mirrored after each change by ``mlflow_alias``).
* ``outcomes``      — what those operations did.
* ``decision``      — metrics, the paired block bootstrap and the promotion rule (pure numpy).
* ``scoring``       — score model bundles (their TFLite files) on one validation set.
* ``validate_model``— the whole nightly gate (the plan's ``validate_model.py``).
* ``walk_forward``  — retrain on expanding folds, score each on the block after it.
* ``walk_forward_report`` — its table, plot, files and MLflow metric names.
* ``registry_cli``  — ``quant registry …``.

Importing this package imports neither MLflow nor TensorFlow.
"""
