"""Provenance: lock files pinning models by digest."""
