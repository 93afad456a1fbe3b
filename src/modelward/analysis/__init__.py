"""Analysers shared by several formats; none of them is a format scanner.

`pycode` (Python source and bytecode names), `jinja_template` (chat templates, with the
bounded evaluator `_jinja_eval`), `keras_config` (Keras model configs), `_marshal` (a
bounded reader of marshalled code objects) and `_protowire` (protobuf wire format). The
format scanners in `modelward.formats` call them; they import only the scanner interface
from `formats` (the `ScanContext` they report through), never the registry or a scanner.
"""
