"""A profile of this machine from nothing measured, with the method of the shipped host
profiles, within a time budget and resumable:

1. per-op collection (a share of the budget) into a dataset;
2. whole models measured in rounds, the fitting set and the test set in turn within each
   round (so a slow spell of the machine touches both alike), until the budget is spent:
   the fitting set is the benchmark's pytorchcv CNN exports and the Hugging Face ViT
   exports of at most ``vit_fit_max_gflops`` (they set the end-to-end term only), ordered
   so that the first measured cover the most architectures; the test set is the generated
   zoo, never trained on. A fitting model that lowers to exactly the kernels of a test
   model (the same network under another name) is left out of the fit;
3. the profile trained on the per-op rows with the end-to-end term fitted on the fitting
   models (its form and ridge chosen by cross-validation over them), and scored on the
   test models: that held-out accuracy, and how far one model's rounds landed apart (the
   machine's own noise), go into its metadata.

Every measurement is kept in ``<out>/.oplat-profile-device/<backend>-<t>t/``; running the
same call again resumes where it stopped (time already spent counts against the budget).
``bench/host_truth.py`` runs the same method with its own sets and options.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import onnx

from ..fitting import error_metrics
from ..onnx_loader import load_onnx
from ..outputs import atomic_write_text
from ..profile import Profile
from ..store import DatasetStore
from ..train import ProfileTrainer, load_graphs, lowered_for
from .backends import Backend
from .run import collect, open_store, read_collected
from .sampler import default_configs
from .whole import measure_models

FRAMEWORKS = {"ort-cpu": "onnxruntime", "litert-cpu": "litert", "opencl": "opencl"}
# the ridge candidates of the end-to-end factors, chosen by CV over the fitting models
FACTOR_RIDGES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
OPS_SHARE = 0.35  # of the budget spent on per-op collection
# then, where the runtime has a profiler (onnxruntime), per-kernel times inside the fitting
# models, up to this share in all (bench/results/in_model_rows.json)
IN_MODEL_SHARE = 0.5
IN_MODEL_MAX_UNMATCHED = 0.1  # a model whose profiled nodes match its kernels worse gives no rows


def model_gflops(lm) -> float:
    """GFLOPs of a lowered model's kernels."""
    from ..features import predictor_key, work_terms

    return sum(work_terms(key, k.type, k.params)[0] for k in lm.kernels
               if (key := predictor_key(k.type, k.impl))) / 1e9


def twins_of(fit_lowered: Mapping[str, Any], test_lowered: Mapping[str, Any]) -> dict[str, str]:
    """``{fitting model: test model}`` for fitting models that lower to the very kernels
    of a test model (same network under another name)."""
    by_sig = {lm.signature(): n for n, lm in test_lowered.items()}
    return {n: by_sig[s] for n, lm in fit_lowered.items() if (s := lm.signature()) in by_sig}


def round_spread(path: str | Path) -> dict[str, float]:
    """How far apart one model's rounds landed (slowest / fastest round median - 1),
    median and 90th percentile over the models: the noise the measurements carry."""
    by: dict[str, list[float]] = {}
    for r in DatasetStore(path).rows():
        if r.get("status") == "ok" and r.get("latency_ms"):
            by.setdefault(r["model"], []).append(float(r["latency_ms"]))
    spread = sorted(max(v) / min(v) - 1 for v in by.values() if len(v) > 1)
    if not spread:
        return {}
    return {"models": len(spread), "median": round(spread[len(spread) // 2], 4),
            "p90": round(spread[int(0.9 * (len(spread) - 1))], 4)}


def informative_order(names: list[str]) -> list[str]:
    """Fitting models in an order whose every prefix covers the most architectures: one
    model of each family (the name up to its first digit or underscore) in turn."""
    import re

    fams: dict[str, list[str]] = {}
    for n in sorted(names):
        fams.setdefault(re.split(r"[\d_\-]", n, maxsplit=1)[0] or n, []).append(n)
    out, k = [], 0
    while len(out) < len(names):
        for f in sorted(fams):
            if k < len(fams[f]):
                out.append(fams[f][k])
        k += 1
    return out


def score_models(profile: Profile, graphs: Mapping[str, Any], measured: Mapping[str, float]
                 ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
    """A profile's predictions of ``graphs`` (zoo names) against ``measured`` ms: error
    metrics of all of them, of the CNNs and of the ViTs, and each model's figures."""
    from ..zoo import is_transformer

    groups: dict[str, tuple[list, list]] = {"all": ([], []), "cnn": ([], []), "vit": ([], [])}
    per_model = {}
    for n, g in graphs.items():
        r = profile.predict(g)
        for fam in ("all", "vit" if is_transformer(n) else "cnn"):
            groups[fam][0].append(r.total_ms)
            groups[fam][1].append(measured[n])
        per_model[n] = {"measured_ms": round(measured[n], 4), "predicted_ms": round(r.total_ms, 4),
                        "error": round(r.total_ms / measured[n] - 1, 4),
                        "unsupported": sorted({u["op_type"] for u in r.unsupported})}
    return {fam: error_metrics(*groups[fam]) for fam in groups}, per_model


def in_model_collect(backend: Backend, models: Mapping[str, Callable[[], onnx.ModelProto]],
                     graphs: Mapping[str, Any], lowered: Callable[[Mapping[str, Any]], dict], path: str | Path,
                     device: str = "host", stop: Callable[[], bool] = lambda: False,
                     info: dict[str, Any] | None = None) -> int:
    """Profile each of ``models`` (not yet in the dataset at ``path``) whole and append its
    kernels' in-model times as rows (:mod:`oplat.collect.in_model`), until ``stop()`` (one
    model at least); resumable. A model whose profiled nodes match its kernels badly is recorded as done
    with no rows. Node times are taken net of the profiler's own time per node, measured
    first (:func:`~oplat.collect.in_model.profiler_overhead`; in microseconds in ``info``
    when given). Returns how many models were profiled now."""
    from .in_model import in_model_rows, profiler_overhead
    from .run import open_store

    info = {} if info is None else info
    store = open_store(path, backend, device)
    done = {r["model"] for r in store.rows() if r.get("status") == "profiled"}
    n = 0
    overhead: tuple[float, float] | None = None
    for name, make in models.items():
        if name in done:
            continue
        if (done or n) and stop():  # at least one model, however small the budget
            break
        lm = lowered({name: graphs[name]})[name]
        if overhead is None:  # measured in this process, before its first model
            overhead = profiler_overhead(backend)
            info["profiler_node_overhead_us"] = round(overhead[0] * 1e3, 3)
        try:
            node_ms, node_args, _ = backend.profile_nodes(make())
        except Exception as e:  # a model the runtime refuses: recorded, never retried
            store.append([{"config_id": f"{name}#done", "model": name, "device": device, "status": "profiled",
                           "error": f"{type(e).__name__}: {e}"[:300]}])
            continue
        # node times net of the profiler's own: the end-to-end term carries what lies between nodes
        rows, st = in_model_rows(name, graphs[name], lm, node_ms, node_args, 1.0, device,
                                 FRAMEWORKS.get(backend.name, backend.name), overhead)
        share = st["unmatched_ms"] / max(st["matched_ms"] + st["unmatched_ms"], 1e-12)
        out = []
        if share <= IN_MODEL_MAX_UNMATCHED:
            for i, r in enumerate(rows):
                out.append({"config_id": f"{name}#{i}", "model": name, "device": device, "framework": r.framework,
                            "processor": r.processor, "kernel": r.kernel, "impl": r.impl,
                            "linked": "|".join(r.linked), "params": json.dumps(r.params, default=list),
                            "config": "", "latency_ms": r.latency_ms, "status": "ok"})
        out.append({"config_id": f"{name}#done", "model": name, "device": device, "status": "profiled",
                    "error": "" if share <= IN_MODEL_MAX_UNMATCHED else f"{share:.0%} of its node time unmatched"})
        store.append(out)
        n += 1
    return n


def profile_device(backend: Backend, out: str | Path, budget_s: float, device: str = "host",
                   fit_limit: int | None = None, test_limit: int | None = None, vit_fit_max_gflops: float = 40.0,
                   max_rounds: int = 5, seed: int = 0,
                   progress: Callable[[str, float], None] | None = None) -> tuple[Profile, dict[str, Any]]:
    """Profile ``backend`` on this machine within ``budget_s`` seconds (resumable under
    ``out``); returns the profile (saved under ``out/<device>/<backend>-<t>t``) and a report
    of what was measured and how accurate it is on the held-out models. ``fit_limit`` and
    ``test_limit`` cap the model sets (tests); ``progress(stage, fraction of the budget)``."""
    from ..zoo import ZOO, build, zoo_dir

    out = Path(out)
    tag = f"{backend.name}-{backend.threads}t"
    work = out / ".oplat-profile-device" / tag
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"spent_s": 0.0}
    start, spent0 = time.monotonic(), float(state["spent_s"])

    def spent() -> float:
        return spent0 + time.monotonic() - start

    def save_state(**extra: Any) -> None:
        state.update(extra, spent_s=round(spent(), 1), budget_s=budget_s)
        atomic_write_text(state_path, json.dumps(state, indent=1))

    def say(stage: str) -> None:
        save_state(stage=stage)
        if progress:
            progress(stage, min(spent() / max(budget_s, 1e-9), 1.0))

    # 1. per-op rows, for a share of the budget
    cnns = load_graphs(zoo_dir("cnn_zoo"))
    vits_all = load_graphs(zoo_dir("vit_zoo"))
    store = open_store(work / "ops.csv", backend, device)
    ops_left = OPS_SHARE * budget_s - spent()
    if ops_left > 0:
        say("per-op collection")
        configs = default_configs(list(cnns.values()) + list(vits_all.values()), 50000, seed=seed,
                                  lowering=backend.lowering)
        collect(backend, configs, store, device, ops_left)
    cache: dict = {}

    def lowered(gs: Mapping[str, Any]) -> dict:
        return lowered_for(gs, backend.lowering[1], backend.lowering[0], cache)

    vits = {n: vits_all[n] for n, lm in lowered(vits_all).items() if model_gflops(lm) <= vit_fit_max_gflops}
    fit_graphs = {**cnns, **vits}
    fit_names = informative_order(list(fit_graphs))[:fit_limit]
    test_names = sorted(ZOO)[:test_limit]
    test_graphs_all = {n: load_onnx(build(n, graph_only=True)) for n in test_names}
    # a fitting model that is a test model under another name gives neither rows nor a fit
    twins = twins_of(lowered({n: fit_graphs[n] for n in fit_names}),
                     lowered_for(test_graphs_all, backend.lowering[1], backend.lowering[0]))

    def from_file(folder: str, name: str) -> onnx.ModelProto:
        return onnx.load(zoo_dir(folder) / f"{name}.onnx", load_external_data=False)

    # 1b. per-kernel times inside the fitting models
    in_model_path = work / "in_model.csv"
    if hasattr(backend, "profile_nodes"):
        say("per-kernel times inside the fitting models")
        in_model_collect(backend, {n: partial(from_file, "cnn_zoo" if n in cnns else "vit_zoo", n)
                                   for n in fit_names if n not in twins},
                         fit_graphs, lowered, in_model_path, device,
                         lambda: spent() >= (OPS_SHARE + IN_MODEL_SHARE) * budget_s, im_info := {})
        if im_info:
            save_state(**im_info)
    # 2. whole models, fitting and test sets in turn, round after round, until the budget is spent

    fit_makers = {n: partial(from_file, "cnn_zoo" if n in cnns else "vit_zoo", n) for n in fit_names}
    test_makers = {n: partial(build, n) for n in test_names}
    fit_e2e: dict[str, float] = {}
    test_e2e: dict[str, float] = {}
    rounds = 0
    step = 8  # models of each set measured in turn, so a budget cut leaves both sets covered
    for k in range(1, max_rounds + 1):
        if spent() >= budget_s and k > 1:
            break
        say(f"whole models, round {k}")
        n = max(len(fit_makers), len(test_makers))
        for j in range(step, n + step, step):
            left = budget_s - spent() if (k > 1 or j > step) else None  # the first chunk always runs
            if left is not None and left <= 0:
                break
            fit_e2e = measure_models(backend, dict(list(fit_makers.items())[:j]), work / "e2e_fit.csv", device,
                                     rounds=k)
            test_e2e = measure_models(backend, dict(list(test_makers.items())[:j]), work / "e2e_test.csv", device,
                                      rounds=k)
        else:
            rounds = k
            continue
        break
    # 3. the profile, fitted on the fitting models and scored on the test models
    say("training")
    test_graphs = {n: g for n, g in test_graphs_all.items() if n in test_e2e}
    twins = {n: t for n, t in twins.items() if n in fit_e2e}
    fit = {n: v for n, v in fit_e2e.items() if n not in twins}
    rows = read_collected(work / "ops.csv")
    in_model = read_collected(in_model_path) if in_model_path.is_file() else []
    rows = rows + in_model
    pid = f"{device}/{tag}"
    prof = ProfileTrainer(FRAMEWORKS.get(backend.name, backend.name), "cpu", lowering=backend.lowering[0],
                          variant=backend.lowering[1], profile_id=pid,
                          source=f"oplat profile-device ({backend.name}, {backend.threads} thread(s)) on this machine",
                          factor_ridge=list(FACTOR_RIDGES), extra_factors=True, factor_units="raw",
                          e2e_term="auto").fit(rows, fit, fit_graphs, device, lowered_cache=cache)
    held_out, per_model = score_models(prof, test_graphs, test_e2e)
    spread = round_spread(work / "e2e_test.csv")
    report = {"profile": pid, "per_op_rows": len(rows) - len(in_model), "in_model_rows": len(in_model),
              "in_model_models": len({r.model for r in in_model}),
              "profiler_node_overhead_us": state.get("profiler_node_overhead_us"),
              "fit_models": len(fit), "fit_excluded_twins": twins,
              "test_models": len(per_model), "rounds": rounds, "round_spread": spread,
              "held_out": held_out,
              "models": per_model, "spent_s": round(spent(), 1), "budget_s": budget_s}
    prof.meta["collection"] = {k: store.meta.get(k) for k in ("backend", "threads", "cores", "machine")}
    prof.meta["accuracy"] = {"method": "held-out models (the generated zoo) measured in the same run, never trained on",
                             "end_to_end": held_out["all"], "end_to_end_cnn": held_out["cnn"],
                             "end_to_end_vit": report["held_out"]["vit"], "round_spread": spread}
    folder = prof.save(out / device / tag)
    atomic_write_text(work / "report.json", json.dumps(report, indent=1))
    say("done")
    report["folder"] = str(folder)
    return prof, report


__all__ = ["profile_device", "in_model_collect", "score_models", "twins_of", "round_spread", "model_gflops", "informative_order", "FACTOR_RIDGES"]
