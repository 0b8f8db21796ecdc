"""Small helpers: the command-line tools' (``cli.py``) and collectives over processes
(``comm.py``)."""
