"""Reports of one `edgeship check` run, written together: JSON, JUnit XML, Markdown, HTML, and
the terminal table. Every writer reads the same report dict (see schema.py)."""

from __future__ import annotations

from pathlib import Path

from edgeship.bundle import write_json_atomic
from edgeship.reports import html, junit, markdown
from edgeship.reports.schema import SCHEMA, build_report, to_json
from edgeship.reports.terminal import print_check

FILES = {"json": "report.json", "junit": "junit.xml", "markdown": "report.md", "html": "report.html"}


def write_reports(report: dict, out_dir: Path, formats=("json", "junit", "markdown", "html")) -> dict[str, Path]:
    """Write each requested format into out_dir; returns {format: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for fmt in formats:
        path = out_dir / FILES[fmt]
        if fmt == "json":
            write_json_atomic(path, to_json(report))
        else:
            text = {"junit": junit.render, "markdown": markdown.render, "html": html.render}[fmt](report)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text)
            tmp.replace(path)
        written[fmt] = path
    return written


def print_report(report: dict, written: dict[str, Path]) -> None:
    print_check(report, written)


__all__ = ["SCHEMA", "FILES", "build_report", "write_reports", "print_report"]
