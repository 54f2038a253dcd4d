"""Datasets: the synthetic generator and loaders for the real on-disk formats."""
