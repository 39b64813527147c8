"""The README's and the docs pages' commands work as written in a fresh shell (no virtualenv activated,
nothing exported but the database to use): every concrete `bin/tsm …` line of their shell blocks runs
and exits 0. Examples moved from the README to a docs page keep running from there."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDER = re.compile(r"[\[\]…<>$]|\b(DATASET|T|S|N|D|K)\b")
pytestmark = pytest.mark.django_db(transaction=True)


def page_commands(page: Path) -> list[str]:
    text = page.read_text()
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith("bin/tsm ") and not PLACEHOLDER.search(command):
                lines.append(command)
    return lines


def readme_commands() -> list[str]:
    return page_commands(ROOT / "README.md")


def documented_commands() -> list[str]:
    """Every concrete command of the README and docs/*.md, each once (the first page naming it)."""
    return list(dict.fromkeys(command for page in PAGES for command in page_commands(page)))


def test_the_readme_has_concrete_commands():
    assert len(readme_commands()) >= 3


def test_the_docs_keep_the_commands_that_moved_out_of_the_readme():
    # the README's concrete commands before its examples moved to docs/ (lifecycle, operations)
    moved = {"bin/tsm retention --dry-run", "bin/tsm lifecycle_apply", "bin/tsm consumers", "bin/tsm list_tokens"}
    assert moved <= set(documented_commands())


@pytest.mark.parametrize("command", documented_commands())
def test_a_documented_command_runs_in_a_fresh_shell(command, tmp_path):
    db = connection.settings_dict
    env = {  # a fresh login shell: no VIRTUAL_ENV, no project variables but the (test) database
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "TSM_TIMESCALEDB": "on" if "timescale" in db["ENGINE"] else "off",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    }
    command = command.replace("var/demo", str(tmp_path / "demo"))  # keep the checkout clean
    run = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (command, run.stdout[-2000:], run.stderr[-2000:])
