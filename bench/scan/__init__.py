"""Detection and speed benchmark of `modelward scan` against peer scanners."""
