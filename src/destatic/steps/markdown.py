"""A report (:func:`destatic.steps.report_page.report_page`) rendered as markdown: ``report.md`` and the Prefect artifact."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from destatic.steps.listening import Section

__all__ = ["markdown_table", "render_markdown"]


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-style markdown table, cells escaped."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

def render_markdown(title: str, facts: Sequence[str], sections: Sequence[Section], *, listening: Path | None = None) -> str:
    """A report (:func:`~destatic.steps.report_page.report_page`) as markdown; `listening` linked among the facts by its path."""
    if listening is not None:
        facts = [*facts, f"listen before and after: [{listening.name}]({Path(listening).absolute().as_uri()}) (`{listening}`)"]
    parts = [f"# {title}", "\n".join(f"- {fact}" for fact in facts)]
    for section in sections:
        parts.append(f"## {section.title}")
        if section.text:
            parts.append(section.text)
        if section.image:
            parts.append(f"![{section.title.lower()}]({section.image})")
        if section.header:
            parts.append(markdown_table(section.header, section.rows))
    return "\n\n".join(parts) + "\n"
