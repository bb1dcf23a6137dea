"""Offline jobs: prep a film into a dataset, reconstruct a film, export engines, benchmark backends."""
