"""Data: sources, batches, datasets."""
