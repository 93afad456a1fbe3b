"""Static pickle analysis: an opcode walker, a symbolic stack and global classification.

`opcodes` is the table, `walker` reads opcodes from hostile bytes, `machine`
runs them symbolically, `policy` classifies imports against
`data/pickle_globals.toml`, and `analysis` turns one stream into findings.
Format scanners use `modelward.formats.pickle.scan_pickle_stream`.
"""
