"""The command line: argument parsing and wiring only; every decision lives in the API."""
