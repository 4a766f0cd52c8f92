"""Direction classifiers: dataset, architectures, training, TFLite export, bundles, inference.

* ``config``: ``TrainingConfig`` (demo defaults for 2 CPU cores; ``QUANT_TRAIN_*`` overrides).
* ``data``: labelled feature rows from the database (``load_labelled_features``) or from bars.
* ``dataset``: windows, chronological split with purge and embargo, train-only scaler, class
  weights, holdout (``build_dataset`` → ``TrainingDataset``).
* ``architectures``: the LSTM and the Transformer encoder (Keras 3).
* ``calibration``: temperature scaling, log-loss and expected calibration error (numpy).
* ``training``: ``train_model``, metrics, figures, ``train_and_calibrate``, ``train_and_bundle``
  (the whole per-model job).
* ``folds``: the walk-forward folds (expanding split plans, each scored on the block after it).
* ``export``: Keras → TFLite and the parity measurement.
* ``bundle``: the versioned model bundle (``write_bundle``, ``load_bundle``, ``next_version``).
* ``inference``: ``Predictor`` (LiteRT only; no TensorFlow import).
* ``baselines``: majority, stratified, logistic regression, the latent-signal oracle, and the
  leakage-guard statistics.

Importing this package imports nothing heavy; TensorFlow/Keras load with ``architectures``,
``training`` and ``export`` only.
"""
