"""Nelo Growth Analytics pipeline: the code the entry scripts share."""
