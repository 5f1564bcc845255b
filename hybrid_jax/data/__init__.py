"""Input data: documents from files (corpus.py), packed byte streams and grain pipelines (pipeline.py)."""
