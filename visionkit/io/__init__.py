"""Reading files into arrays: the toolkit's one image reader (``image.py``)."""
