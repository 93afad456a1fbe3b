"""Provenance: where a model comes from and whether it may be used.

The lock file pinning models by digest (`lock`), the bill of materials (`bom`), look-alike
model names (`names`), the deployment policy (`policy`) and the gate that checks a model
against all of them (`gate`).
"""
