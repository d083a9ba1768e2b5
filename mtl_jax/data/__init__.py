"""Data generators and loaders for mtl_jax (no heavy imports here)."""
