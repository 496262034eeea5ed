"""The invariant on broken and hostile files (oplat.fuzz's seeded corpus, made at test
time): `oplat predict`, `oplat convert` and `coexec plan` give a clean one-line error
(exit 2) or a finite prediction, never an uncaught exception; graphs a runtime would
reject are refused; unusual but valid models predict."""

from __future__ import annotations

import numpy as np
import pytest

from coexec.cli import main as coexec_main
from oplat.cli import main as oplat_main
from oplat.fuzz import corpus, edge_models, run_case, run_corpus, structural_cases

COMMANDS = {
    "predict": lambda p, d: (oplat_main, ["predict", str(p), "--profile", "pixel4/tflite-gpu", "--json"]),
    "convert": lambda p, d: (oplat_main, ["convert", str(p), "-o", str(d / (p.name + ".out.tflite")), "--force"]),
    "coexec_plan": lambda p, d: (coexec_main, ["plan", str(p), "--device", "pixel4", "--json"]),
}


def test_seeded_corpus_never_crashes(tmp_path):
    files = corpus(seed=0, n=200)
    assert len(files) >= 200 + 20
    res = run_corpus(files, tmp_path, COMMANDS)
    assert not res["crashes"], res["crashes"][:10]
    for cmd, counts in res["counts"].items():
        assert counts["ok"] > 0 and counts["refused"] > 0, (cmd, counts)  # both paths really exercised


@pytest.mark.parametrize("name,data", structural_cases(np.random.default_rng(0)), ids=lambda x: str(x)[:40])
def test_graphs_a_runtime_rejects_are_refused_in_one_line(name, data, tmp_path):
    p = tmp_path / name
    p.write_bytes(data)
    outcome, line = run_case(oplat_main, ["predict", str(p), "--profile", "pixel4/tflite-gpu", "--json"])
    assert outcome == "refused", (outcome, line)
    assert line.startswith("oplat: error: ") and len(line) < 600


@pytest.mark.parametrize("name,data", edge_models(np.random.default_rng(0)), ids=lambda x: str(x)[:40])
def test_unusual_valid_models_predict(name, data, tmp_path):
    p = tmp_path / name
    p.write_bytes(data)
    for main, argv in ((oplat_main, ["predict", str(p), "--profile", "pixel4/tflite-gpu", "--json"]),
                       (coexec_main, ["plan", str(p), "--device", "pixel4", "--json"])):
        assert run_case(main, argv) == ("ok", "")


def test_corpus_is_deterministic():
    a, b = corpus(seed=3, n=30), corpus(seed=3, n=30)
    assert a == b and corpus(seed=4, n=30) != a
