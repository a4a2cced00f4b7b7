"""Greenlist's foundation layer: what every other package may import, and which imports none of them.

* :mod:`greenlist.home`: the one data directory (``GREENLIST_HOME``).
* :mod:`greenlist.clock`: the injectable clock code that waits reads time from.
* :mod:`greenlist.breaker`: a circuit breaker for calls to remote services (upstream models, LLM judges).

Layers (checked by import-linter, ``pyproject.toml``): ``gateway`` -> ``guardrails`` / ``watermark`` ->
``greenlist``.
"""
