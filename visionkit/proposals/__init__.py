"""Region proposals computed before detection: the selective-search algorithm. The per-dataset
cache and the datasets whose targets carry proposals live in ``visionkit/data/``
(``proposal_cache.py``, ``proposal_dataset.py``)."""
