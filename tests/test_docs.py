"""Every command the manual shows runs as written: the `$ ` lines of README.md and docs/*.md,
in order per file, from a fresh working folder beside the repository's files (so outputs
land there). A command whose shown output starts with an error line must fail with exit 2,
every other one must succeed. Commands that need a phone or minutes of measuring are shown
in the docs as commands to reproduce (`# reproduce ...`, `# with a phone ...`), not as `$ `."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def commands(page: Path) -> list[tuple[str, int]]:
    """``(command, expected exit code)`` of every `$ ` line inside the page's code blocks."""
    out, in_block = [], False
    lines = page.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("```"):
            in_block = not in_block
            continue
        if in_block and line.startswith("$ "):
            cmd = re.sub(r"\s+#\s.*$", "", line[2:])  # a trailing comment is not part of it
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            out.append((cmd, 2 if re.match(r"^[a-z-]+: error:", nxt) else 0))
    return out


def test_the_manual_shows_commands():
    assert len(commands(ROOT / "README.md")) >= 6
    assert sum(len(commands(p)) for p in PAGES) >= 15


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_in_the_manual_runs(page, tmp_path):
    cmds = commands(page)
    if not cmds:
        return
    for name in ("oplat", "docs"):  # the paths the examples use, relative to a fresh clone
        (tmp_path / name).symlink_to(ROOT / name)
    env = dict(os.environ, COLUMNS="120")
    for cmd, expected in cmds:
        r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300, env=env)
        assert r.returncode == expected, f"{page.name}: $ {cmd}\nexit {r.returncode}\n{r.stdout[-800:]}{r.stderr[-1500:]}"
