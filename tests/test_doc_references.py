"""Every place in the code that sends the reader to the README or to a docs/ page names a heading that exists.

A reference is ``docs/PAGE.md`` or ``docs/PAGE.md#anchor`` (GitHub's heading anchors), or ``README "Heading"``
(the start of one of the README's headings). A bare mention of the README names no place to read and fails too:
sections move (most of the README's manual went to docs/), and a reference that names its heading is checked here.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("cytoedge", "train", "convert", "edge_app", "benchmarks", "hardware", "tests", "requirements", ".ci")
SUFFIXES = {".py", ".sh", ".toml", ".txt", ".html", ".js", ".cfg", ".service"}
TOP_FILES = ("Makefile", "pyproject.toml")
DOCS_REF = re.compile(r"docs/([\w.-]+\.md)(?:#([\w-]+))?")
README_REF = re.compile(r"README(\.md)?(?:#([\w-]+)|\s*[:,(]?\s*[\"']([^\"'\n]+)[\"'])?")


def _headings(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)  # not a shell comment
    return [m.group(1).strip() for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)]


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: Counter[str] = Counter()
    found = set()
    for heading in _headings(page):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return found


def code_files() -> list[Path]:
    files = [REPO / name for name in TOP_FILES]
    for folder in FOLDERS:
        files += [p for p in (REPO / folder).rglob("*") if p.suffix in SUFFIXES and p.is_file()
                  and "__pycache__" not in p.parts and p != Path(__file__).resolve()]
    return files


def references() -> list[tuple[str, str, str | None, str | None]]:
    """(where, page, anchor, heading) for every reference in the code."""
    found = []
    for path in code_files():
        for no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            where = f"{path.relative_to(REPO)}:{no}"
            for m in DOCS_REF.finditer(line):
                found.append((where, f"docs/{m.group(1)}", m.group(2), None))
            for m in README_REF.finditer(line):
                found.append((where, "README.md", m.group(2), m.group(3) or ("" if not m.group(1) else None)))
    return found


def test_anchors_are_githubs(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Pi check\n## `make pi-check`\n## int8 input: pixels (measured)\n```sh\n# not a heading\n```\n"
                    "## Pi check\n")
    assert anchors(page) == {"pi-check", "make-pi-check", "int8-input-pixels-measured", "pi-check-1"}


def test_the_code_refers_to_the_docs():
    pages = {page for _, page, _, _ in references()}
    assert "README.md" in pages and any(p.startswith("docs/") for p in pages)  # the scan finds references at all


@pytest.mark.parametrize("where, page, anchor, heading", references())
def test_every_reference_resolves(where, page, anchor, heading):
    target = REPO / page
    assert target.is_file(), f"{where}: {page} does not exist"
    if anchor:
        assert anchor in anchors(target), f"{where}: {page} has no heading #{anchor}: {sorted(anchors(target))}"
    if heading == "":
        raise AssertionError(f"{where}: name the README's heading (README \"Heading\") or a docs/ page#anchor")
    if heading:
        known = [re.sub(r"[`*]", "", h).lower() for h in _headings(target)]
        assert any(h.startswith(heading.lower()) for h in known), f"{where}: {page} has no heading {heading!r}"
