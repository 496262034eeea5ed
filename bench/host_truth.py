"""Host profile and its truth: collect per-op data on this machine, fit, and check on
whole zoo models measured on the same machine in the same run.

1. per-op collection (resumable) for ``--budget`` into bench/results/host_<backend>_<t>t_ops.csv
2. whole-model measurements, in rounds, of two sets measured in turn within each round
   (so a slow spell of the machine touches both alike): the fitting set, the pytorchcv
   exports (oplat/zoo/cnn_zoo) plus, with ``--vit-fit``, the Hugging Face ViT exports
   (oplat/zoo/vit_zoo) of at most ``--vit-fit-max-gflops``, which fit the end-to-end term
   only; and the test set, the generated zoo (CNNs and ViTs, never used in training).
   A fitting model that lowers to exactly the kernels of a test model (pytorchcv's
   mobilenet_w1 is the zoo's mobilenet_v1_1.0; the ViT exports share the zoo's
   generators) is left out of the fit, so no test model's own measurement sets a factor
   (``--keep-twins`` keeps them, the protocol before 2026-12-04)
3. profile trained and saved to device_profiles/host/<backend>-<t>t (with ``--ship``)
4. the test set's measurements compared with predictions: share within ±10% and MAPE,
   CNNs and ViTs separately.

    python -m bench.host_truth --budget 300 [--threads 1] [--ship]
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import onnx  # noqa: E402

from oplat.zoo import ZOO, build, is_transformer  # noqa: E402
from oplat.collect.backends import make_backend  # noqa: E402
from oplat.collect.run import collect, open_store, read_collected  # noqa: E402
from oplat.collect.sampler import default_configs, select_kernels  # noqa: E402
from oplat.collect.device import model_gflops, round_spread, score_models, twins_of  # noqa: E402
from oplat.collect.whole import measure_models  # noqa: E402
from oplat.onnx_loader import load_onnx  # noqa: E402
from oplat.overhead import factored_keys  # noqa: E402
from oplat.train import ProfileTrainer, load_graphs, lowered_for  # noqa: E402
from oplat.zoo import zoo_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="ort-cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget", type=float, default=300, help="seconds of per-op collection")
    ap.add_argument("--ship", action="store_true", help="save the profile under device_profiles/host")
    ap.add_argument("--skip-vits", action="store_true")
    ap.add_argument("--factor-ridge", default="0.01,0.03,0.1,0.3,1,3,10,30,100,300,1000",
                    help="ridge of the end-to-end factors towards 1; a comma list: chosen by 10-fold CV "
                         "over the fitting models")
    ap.add_argument("--signed-counts", action="store_true",
                    help="let per-kernel counts in the end-to-end term go negative (per-call costs of single-op timing)")
    ap.add_argument("--kernels", help="collect only these kernel types this run (e.g. SPLIT,SLICE,GATHER,RESIZE)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="passes over the whole models; each model's figure is its fastest round's median")
    ap.add_argument("--compare", help="also score this profile (id or folder) on the same measurements")
    ap.add_argument("--vit-fit", action="store_true",
                    help="fit the end-to-end term on the ViT exports of oplat/zoo/vit_zoo too")
    ap.add_argument("--vit-fit-max-gflops", type=float, default=40.0)
    ap.add_argument("--factor-units", choices=("scaled", "raw"), default="scaled",
                    help="how the ridge measures a factor's distance from 1 (oplat.overhead.fit_overhead)")
    ap.add_argument("--keep-twins", action="store_true",
                    help="fit on models that lower to the same kernels as a test model too")
    ap.add_argument("--extra-factors", action="store_true",
                    help="end-to-end factors for the transformer and CPU kernel families too")
    ap.add_argument("--lowering-variant",
                    help="the lowering variant of the machine the stored data was measured on, where it is not "
                         "this one's (nchwc8: onnxruntime on AVX2, 8-channel NCHWc blocks)")
    args = ap.parse_args()
    tag = f"host_{args.backend}_{args.threads}t"
    ridges = [float(x) for x in args.factor_ridge.split(",")]
    res_dir = ROOT / "bench" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    backend = make_backend(args.backend, args.threads)
    if args.lowering_variant:
        backend.lowering = (backend.lowering[0], args.lowering_variant)
    graphs = load_graphs(zoo_dir("cnn_zoo"))

    t0 = time.time()
    store = open_store(res_dir / f"{tag}_ops.csv", backend, "host")
    configs = default_configs(graphs.values(), 50000, seed=0, lowering=backend.lowering)
    if args.kernels:
        configs = select_kernels(configs, args.kernels)
    counts = collect(backend, configs, store, "host", args.budget)
    print("per-op", counts, flush=True)

    def from_file(folder: str, name: str):
        return onnx.load(zoo_dir(folder) / f"{name}.onnx", load_external_data=False)

    fit_cnns = set(graphs)
    fit_makers = {n: partial(from_file, "cnn_zoo", n) for n in sorted(graphs)}
    cache: dict = {}  # each graph lowered once, for the GFLOPs, the twins and the fit

    def lowered(gs: dict) -> dict:
        return lowered_for(gs, backend.lowering[1], backend.lowering[0], cache)

    if args.vit_fit:
        vit_graphs = load_graphs(zoo_dir("vit_zoo"))
        vits = {n: vit_graphs[n] for n, lm in lowered(vit_graphs).items()
                if model_gflops(lm) <= args.vit_fit_max_gflops}
        graphs.update(vits)
        fit_makers.update({n: partial(from_file, "vit_zoo", n) for n in sorted(vits)})
    test_names = [n for n in sorted(ZOO) if not (args.skip_vits and is_transformer(n))]
    test_makers = {n: partial(build, n) for n in test_names}
    for k in range(1, args.rounds + 1):  # round k of both sets before round k + 1 of either
        fit_e2e = measure_models(backend, fit_makers, res_dir / f"{tag}_e2e_fit.csv", rounds=k)
        test_e2e = measure_models(backend, test_makers, res_dir / f"{tag}_e2e_test.csv", rounds=k)
        print(f"round {k}: {len(fit_e2e)} fit and {len(test_e2e)} test models measured", flush=True)

    test_graphs = {n: load_onnx(build(n, graph_only=True)) for n in test_names if n in test_e2e}
    # the test graphs stay out of the cache: a zoo name may equal a pytorchcv export's
    twins = {} if args.keep_twins else twins_of(
        lowered(graphs), lowered_for(test_graphs, backend.lowering[1], backend.lowering[0]))
    fit_e2e = {n: v for n, v in fit_e2e.items() if n not in twins}
    rows = read_collected(res_dir / f"{tag}_ops.csv")
    pid = f"host/{args.backend}-{args.threads}t"
    framework = {"ort-cpu": "onnxruntime", "litert-cpu": "litert", "opencl": "opencl"}[args.backend]
    prof = ProfileTrainer(framework, "cpu", lowering=backend.lowering[0], variant=backend.lowering[1],
                          source=f"oplat collect ({args.backend}, {args.threads} thread(s)) on this machine",
                          profile_id=pid, factor_ridge=ridges[0] if len(ridges) == 1 else ridges,
                          signed_counts=args.signed_counts, extra_factors=args.extra_factors,
                          factor_units=args.factor_units).fit(rows, fit_e2e, graphs, "host", lowered_cache=cache)

    def score(profile) -> tuple[dict, dict]:
        held, models = score_models(profile, test_graphs, test_e2e)
        return {fam: held[fam] for fam in ("cnn", "vit")}, models

    held_out, per_model = score(prof)
    result = {"profile": pid, "lowering": list(backend.lowering), "per_op_rows": len(rows), "collect": counts,
              "fit_models": len(fit_e2e),
              "fit_vits": sum(1 for n in fit_e2e if n in graphs and n not in fit_cnns),
              "fit_excluded_twins": twins,
              "extra_factors": factored_keys(prof.meta["overhead"]["features"]),
              "factor_ridge": prof.meta["overhead"]["factor_ridge"], "factor_units": args.factor_units,
              "factor_ridge_cv_mape": prof.meta["overhead"].get("factor_ridge_cv_mape"),
              "rounds": args.rounds, "round_spread": round_spread(res_dir / f"{tag}_e2e_test.csv"),
              "held_out": held_out, "models": per_model,
              "seconds": round(time.time() - t0, 1), "accuracy_method": "generated zoo models, never trained on"}
    if args.compare:
        from oplat.profile import load_profile

        other, other_models = score(load_profile(args.compare))
        result["compare"] = {"profile": args.compare, "held_out": other, "models": other_models}
        print("compared:", json.dumps(other), flush=True)
    prof.meta["collection"] = {k: store.meta.get(k) for k in ("backend", "threads", "cores", "machine")}
    prof.meta["accuracy"] = {"method": result["accuracy_method"], "end_to_end": result["held_out"]["cnn"],
                             "end_to_end_vit": result["held_out"]["vit"]}
    (res_dir / f"{tag}_truth.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["held_out"], indent=1))
    if args.ship:
        print("saved", prof.save(ROOT / "device_profiles" / "host" / f"{args.backend}-{args.threads}t"))


if __name__ == "__main__":
    main()
