"""Files in and out: the one image reader (``image.py``), the one reader of structured files,
YAML, JSON, JSONL and XML (``structured.py``), atomic writes (``atomic.py``) and the output rule
that keeps every output off the inputs (``outputs.py``); the process's heaps (``heap.py``)."""
