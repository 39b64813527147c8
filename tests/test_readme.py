"""The README's commands work as written in a fresh shell (no virtualenv activated, nothing exported
but the database to use): every concrete `bin/tsm …` line of its shell blocks runs and exits 0."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = re.compile(r"[\[\]…<>$]|\b(DATASET|T|S|N|D|K)\b")
pytestmark = pytest.mark.django_db(transaction=True)


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith("bin/tsm ") and not PLACEHOLDER.search(command):
                lines.append(command)
    return lines


def test_the_readme_has_concrete_commands():
    assert len(readme_commands()) >= 3


@pytest.mark.parametrize("command", readme_commands())
def test_a_readme_command_runs_in_a_fresh_shell(command, tmp_path):
    db = connection.settings_dict
    env = {  # a fresh login shell: no VIRTUAL_ENV, no project variables but the (test) database
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "TSM_TIMESCALEDB": "on" if "timescale" in db["ENGINE"] else "off",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    }
    command = command.replace("var/demo", str(tmp_path / "demo"))  # keep the checkout clean
    run = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (command, run.stdout[-2000:], run.stderr[-2000:])
