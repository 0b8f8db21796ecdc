"""Looking at models: complexity.py (parameters and multiply-accumulates per layer), paths.py
(what a summary runs of each model), receptive_field.py, compare.py, visualize.py.

Nothing is imported here, so that each module pulls in only what it needs."""
