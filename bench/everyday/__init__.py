"""Everyday-files benchmark: files popular ML and data libraries write in ordinary use.

`corpus.py` writes them (run inside bench/.venv-everyday, where those libraries live),
`wheels.py` collects the model and test-data files PyPI wheels ship, and `run.py` scans the
result with modelward and the peer scanners. The entry point is bench/everyday.py.
"""
