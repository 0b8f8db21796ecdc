"""Small helpers below every concept: the command-line tools' (``cli.py``), collectives over
processes (``comm.py``), warnings (``warn.py``), the rules of numbers files obey
(``validators.py``), and drawing on images (``draw.py``: class colours, labelled boxes,
segmentation overlays; used by ``inference`` and ``analysis``)."""
