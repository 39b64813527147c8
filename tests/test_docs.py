"""The documentation explains the project from its own files: every relative link in README.md and
docs/ resolves (file and heading), no page names a file the repository does not hold, and
docs/configuration.md lists exactly the environment variables tsm_site/settings.py reads, with their
defaults."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
ENV_HELPERS = {"env_str", "env_bool", "env_int", "env_choice"}


def without_code(text: str) -> str:
    """The page without fenced blocks and inline code (a link or name inside code is an example)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def relative_links() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for target in LINK.findall(without_code(page.read_text())):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: are not checked
                out.append((str(page.relative_to(ROOT)), target))
    return out


def test_there_are_links_to_check():
    assert len(relative_links()) >= 30


@pytest.mark.parametrize(("page", "target"), relative_links())
def test_a_relative_link_resolves_to_a_file_and_heading_of_the_repository(page, target):
    path, _, anchor = target.partition("#")
    resolved = (ROOT / page).parent / path if path else ROOT / page
    assert resolved.exists(), f"{page} links to {target}: no such file"
    if anchor and resolved.suffix == ".md":
        assert anchor in anchors(resolved), f"{page} links to {target}: no such heading in {path or page}"


def test_no_page_or_module_refers_to_the_design_document_that_is_not_in_the_repository():
    missing = "DESIGN" + ".md"  # spelled so that a grep for the name finds no reference here either
    assert not (ROOT / missing).exists()
    offenders = []
    for path in [
        *PAGES,
        *ROOT.glob("tsm_site/**/*.py"),
        *ROOT.glob("timeseries/**/*.py"),
        *ROOT.glob("ingestion/**/*.py"),
        *ROOT.glob("tests/**/*.py"),
        *ROOT.glob("bench/**/*.py"),
    ]:
        if path == Path(__file__).resolve():
            continue
        if missing in path.read_text():
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


# --- docs/configuration.md against tsm_site/settings.py ----------------------------------------------


def settings_environment() -> dict[str, object]:
    """Every environment variable settings.py reads -> its literal default (None when not a literal)."""
    tree = ast.parse((ROOT / "tsm_site" / "settings.py").read_text())
    found: dict[str, object] = {}

    def literal(node: ast.AST | None) -> object:
        if node is None:
            return None
        try:
            return eval(compile(ast.Expression(node), "settings.py", "eval"), {"__builtins__": {}})  # constants only
        except Exception:
            return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            first = node.args[0] if node.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            if isinstance(func, ast.Name) and func.id in ENV_HELPERS:
                found[first.value] = literal(node.args[1] if len(node.args) > 1 else None)
            elif isinstance(func, ast.Name) and func.id in ("env_intervals", "env_feed_ranks"):
                found[f"{first.value}_<DATASET>"] = None
            elif isinstance(func, ast.Attribute) and func.attr == "get" and ast.unparse(func.value) == "os.environ":
                found[first.value] = literal(node.args[1] if len(node.args) > 1 else None)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            if isinstance(node.slice, ast.Constant):
                found[node.slice.value] = None
    return found


def documented_environment() -> dict[str, str]:
    """The table of docs/configuration.md's section on settings.py: variable -> its default cell."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = re.search(r"^## Environment variables read by settings\.py$(.*?)(?=^## )", text, flags=re.M | re.S)
    assert section, "docs/configuration.md has no section 'Environment variables read by settings.py'"
    rows = {}
    for line in section.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`[A-Z][A-Z0-9_<>]*`", cells[0]):
            rows[cells[0].strip("`")] = cells[1]
    return rows


def test_the_settings_read_a_known_set_of_variables():
    names = settings_environment()
    assert {"DATABASE_URL", "REDIS_URL", "TSM_TIMESCALEDB", "TSM_RETENTION_<DATASET>"} <= set(names)


def test_every_variable_the_settings_read_is_documented_and_nothing_else():
    read, documented = set(settings_environment()), set(documented_environment())
    assert not read - documented, (
        f"read by tsm_site/settings.py, missing from docs/configuration.md: {sorted(read - documented)}"
    )
    assert not documented - read, (
        f"in docs/configuration.md, not read by tsm_site/settings.py: {sorted(documented - read)}"
    )


def test_every_literal_default_is_the_documented_one():
    documented = documented_environment()
    wrong = {}
    for name, default in settings_environment().items():
        if default in (None, ""):
            continue
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        if f"`{shown}`" not in documented.get(name, ""):
            wrong[name] = (default, documented.get(name))
    assert not wrong, f"defaults in settings.py vs docs/configuration.md: {wrong}"
