"""Evaluation like the polyp literature: `python -m polyp.evaluate` (see its __main__)."""
