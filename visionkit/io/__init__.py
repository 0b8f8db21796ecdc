"""Reading files: the toolkit's one image reader (``image.py``) and its one reader of structured
files, YAML, JSON, JSONL and XML (``structured.py``)."""
