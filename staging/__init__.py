"""Staged Parquet: the partition layout and the manifest that records consumed bytes."""
