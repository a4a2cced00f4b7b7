"""Training, evaluation and auditing of the toxicity models: imported by nothing at run time.

* :mod:`.data` loads the labelled corpora in ``../shared/data/toxicity``;
* :mod:`.train` fits the default heads (recipes v1-v5), :mod:`.finetune` tunes MiniLM's top layers,
  :mod:`.multilingual` the multilingual heads;
* :mod:`.audit` measures fairness (Borkan et al. 2019), calibrates thresholds and compares models;
* :mod:`.cli` holds the ``greenlist`` commands built on them.
"""
