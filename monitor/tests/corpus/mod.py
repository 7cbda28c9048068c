"""A module the corpus imports, so Python writes its __pycache__."""
VALUE = 1
