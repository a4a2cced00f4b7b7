"""Training, evaluation and auditing of the toxicity models: imported by nothing at run time.

* :mod:`.data` loads the labelled corpora in ``../shared/data/toxicity``;
* :mod:`.train` fits the default heads (recipes v1-v12), :mod:`.tune_layers` fine-tunes MiniLM's layers
  (recipes v9, v12), :mod:`.finetune` holds the shared data helpers, :mod:`.multilingual` the multilingual heads;
* :mod:`.audit` measures fairness (Borkan et al. 2019), calibrates thresholds and compares models;
* :mod:`.cli` holds the ``greenlist`` commands built on them.
"""
