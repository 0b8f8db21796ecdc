"""Files in and out: the one image reader (``image.py``), atomic writes (``atomic.py``) and the
output rule that keeps every output off the inputs (``outputs.py``)."""
