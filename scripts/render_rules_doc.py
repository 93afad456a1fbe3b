#!/usr/bin/env python3
"""Write the rules table of docs/rules.md from the rule registry (src/modelward/rules.py).

The registry is the one place a rule's id, severity, title, ATLAS technique and help are
kept; SARIF reads it at run time, and the reference's table is written from it here. The
text around the table (between the two markers) is kept as it is. `tests/test_rules.py`
fails when the committed table differs from what this writes; then edit the registry (not
the table) and run

    python scripts/render_rules_doc.py
"""

from __future__ import annotations

import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "rules.md"
BEGIN = "<!-- rules table: written by scripts/render_rules_doc.py from src/modelward/rules.py -->"
END = "<!-- end of rules table -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table() -> str:
    """The Markdown table of every registered rule, in the registry's order."""
    from modelward.rules import RULES

    lines = ["| Rule id | Severity | ATLAS | Meaning |", "|---|---|---|---|"]
    for rule in RULES.values():
        technique = rule.technique or "the finding's"
        meaning = f"**{rule.title}.** {rule.help}"
        lines.append(
            f"| {rule.id} | {_cell(rule.severity_text)} | {technique} | {_cell(meaning)} |"
        )
    return "\n".join(lines) + "\n"


def render(current: str) -> str:
    """`current` (the text of docs/rules.md) with the table between the markers rewritten."""
    head, begin, rest = current.partition(BEGIN + "\n")
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"{DOC.name}: the markers {BEGIN!r} and {END!r} are missing")
    return f"{head}{BEGIN}\n{table()}{END}{tail}"


def main() -> int:
    DOC.write_text(render(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
