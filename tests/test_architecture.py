"""The package layering: contracts in pyproject.toml ([tool.importlinter]) and no import
cycle anywhere, counting imports inside functions (grimp sees those too)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("oplat", "coexec", "android_harness")


def _import_graph() -> nx.DiGraph:
    g = grimp.build_graph(*PACKAGES)
    out = nx.DiGraph()
    for m in g.modules:
        out.add_node(m)
        for d in g.find_modules_directly_imported_by(m):
            out.add_edge(m, d)
    return out


def test_import_contracts_hold():
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True, no_logo=True))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "3 kept, 0 broken" in r.stdout


def test_no_import_cycle():
    g = _import_graph()
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"
    assert g.number_of_nodes() > 50  # the graph really was built over the packages


def test_oplat_imports_nothing_above_it():
    g = _import_graph()
    up = [(a, b) for a, b in g.edges if a.split(".")[0] == "oplat" and b.split(".")[0] != "oplat"]
    assert not up, up
