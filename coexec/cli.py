"""``coexec`` command line: plan CPU/GPU co-execution and split models to match."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence


from oplat.outputs import (MAX_JSON_BYTES, atomic_write_bytes, atomic_write_text, check_output_file, is_json_file,
                           is_onnx_file, is_png, read_text_input)

from .cost import SYNC_US


def cmd_plan(args: argparse.Namespace) -> int:
    from oplat.onnx_loader import parse_input_shapes

    from .plan import PlanError, default_profiles, make_plan

    if not (args.device or (args.cpu_profile and args.gpu_profile)):
        raise PlanError("give --device, or both --cpu-profile and --gpu-profile")
    if args.output:  # before planning: never replace an input or something that is not a plan
        check_output_file(args.output, args.force, "plan JSON", lambda p: is_json_file(p, "ops"), inputs=[args.model])
    if args.plot:
        check_output_file(args.plot, args.force, "PNG image", is_png, inputs=[args.model])
    cpu_id, gpu_id = default_profiles(args.device) if args.device else (None, None)
    sync_us = args.sync_us if args.sync_us is not None else SYNC_US[args.sync]
    plan = make_plan(args.model, args.cpu_profile or cpu_id, args.gpu_profile or gpu_id, sync_us=sync_us,
                     steps=args.steps, dims=args.dims.split(","), allow_mixed=args.allow_mixed,
                     oracle=args.oracle, input_shapes=parse_input_shapes(args.input_shape), min_gain=args.min_gain)
    for pid, why in plan["profiles_measured_elsewhere"].items():
        print(f"warning: {pid} was measured on {why}: the plan fits that machine", file=sys.stderr)
    for warning in _plan_fit_warnings(plan, args.model, parse_input_shapes(args.input_shape)):
        print(f"warning: {warning}", file=sys.stderr)
    if args.output:
        atomic_write_text(args.output, json.dumps(plan, indent=1))
    if args.plot:
        plot_plan(plan, args.plot, Path(args.model).name)
    if args.json:
        print(json.dumps(plan))
        return 0
    _print_plan(plan, args.top)
    return 0


def _plan_fit_warnings(plan: dict[str, Any], model: str, shapes) -> list[str]:
    """What the plan's profiles could not predict of the model (kernels approximated by
    other kernels' regressors), with the profiles of the device that fit it better."""
    approx = {pid: counts for pid, counts in (plan.get("approximated_kernels") or {}).items() if counts}
    if not approx:
        return []
    from oplat.hints import fitting_profiles
    from oplat.model_io import load_model
    from oplat.profile import load_profile

    graph = load_model(model, shapes)
    out = []
    for pid, counts in approx.items():
        n = sum(counts.values())
        better = fitting_profiles(graph, load_profile(pid), same_processor=True)
        out.append(f"{pid} has no regressor for {n} kernels of this model ({', '.join(sorted(counts))}); the plan "
                   "prices them with the regressors of similar kernels, so its speedup is less certain"
                   + (f"; profiles that fit it: {', '.join(b for b, _ in better)}" if better else ""))
    return out


def _print_plan(plan: dict[str, Any], top: int | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"{plan['model']}: {plan['profiles']['cpu']} + {plan['profiles']['gpu']}, sync {plan['sync_us']:g} us")
    for col, just in (("#", "right"), ("kernel", "left"), ("placement", "left"), ("dim", "left"),
                      ("GPU share", "right"), ("GPU ms", "right"), ("CPU ms", "right"), ("idle ms", "right")):
        t.add_column(col, justify=just)
    ops = plan["ops"] if top is None else plan["ops"][:top]
    for i, o in enumerate(ops):
        t.add_row(str(i), o["kernel"], o["placement"], o["dimension"] or "", f"{o['ratio']:.3f}",
                  f"{o['predicted_gpu_ms']:.3f}", f"{o['predicted_cpu_ms']:.3f}", f"{o['predicted_sync_ms']:.3f}")
    if top is None or top > 0:
        console.print(t)
    p = plan["predicted_ms"]
    ms = lambda v: f"{v:.2f} ms" if v is not None else "cannot run (ops without a kernel)"  # noqa: E731
    console.print(f"predicted: CPU only {ms(p['cpu'])}, GPU only {ms(p['gpu'])}, co-execution {ms(p['coexec'])}")
    console.print(f"[bold]speedup over the faster processor ({plan['faster_single']}): {plan['speedup']:.3f}x[/bold]"
                  f"  ops split: {plan['split_share']:.0%}  planned in {plan['planner_seconds'] * 1000:.0f} ms"
                  + (f"  oracle {plan['oracle_ms']:.2f} ms" if "oracle_ms" in plan else ""))
    whole = [o for o in plan["ops"] if o.get("note")]
    if whole:
        console.print(f"[yellow]{len(whole)} ops run whole (no split rule), e.g. {whole[0]['kernel']}: "
                      f"{whole[0]['note']}[/yellow]")


def plot_plan(plan: dict[str, Any], path: str, title: str | None = None) -> None:
    """PNG: GPU share per op, and the predicted time saved against the faster processor
    alone, per op and, as the last bar, what waits and overlap add, so the bars sum to the
    plan's predicted saving."""
    from matplotlib.patches import Patch

    from oplat.extras import need
    from oplat.report import save_png

    matplotlib = need("matplotlib", "a plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = plan["ops"]
    n = len(ops)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(7, n * 0.08), 5.5), sharex=True)
    col = {"split": "tab:orange", "gpu": "tab:green", "cpu": "tab:blue"}
    colors = [col.get(o["placement"], "tab:gray") for o in ops]
    a1.bar(range(n), [max(o["ratio"], 0.02) for o in ops], color=colors, width=0.9)  # whole-CPU ops stay visible
    a1.set_ylabel("GPU share")
    a1.legend(handles=[Patch(color=c, label=k) for k, c in col.items()], fontsize=7, ncol=3, loc="upper right")
    fast = plan["faster_single"]
    pm = plan["predicted_ms"]
    total = (pm[fast] - pm["coexec"]) if pm.get(fast) is not None and pm.get("coexec") is not None else 0.0
    per_op = [o.get("saved_ms") or 0.0 for o in ops]
    rest = total - sum(per_op)  # synchronisation waits and what the two processors overlap
    a2.bar(range(n), per_op, color=colors, width=0.9)
    a2.bar([n + 1], [rest], color="tab:gray", width=0.9)
    a2.axhline(0, color="k", lw=0.6)
    a2.set_ylabel(f"ms saved vs {fast.upper()} alone")
    a2.set_xlabel("op (execution order); last bar: waits and overlap")
    fig.suptitle(f"{title or plan['model']} on {plan['device']}: {pm[fast]:.2f} ms on the {fast.upper()} alone, "
                 f"{pm['coexec']:.2f} ms planned ({plan['speedup']:.2f}x, {total:+.2f} ms = the bars' sum)", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def cmd_split(args: argparse.Namespace) -> int:
    from .plan import PlanError
    from .split import split_model

    args.plan = args.plan_opt or args.plan_file
    if not args.plan:
        raise PlanError("give the plan: coexec split MODEL --plan PLAN.json -o OUT.onnx")

    out = check_output_file(args.output, args.force, "ONNX model", is_onnx_file, inputs=[args.model, args.plan])
    try:
        plan = json.loads(read_text_input(args.plan, "plan", MAX_JSON_BYTES))
    except json.JSONDecodeError as e:
        raise PlanError(f"cannot read plan {args.plan}: {e}") from None
    m, kept = split_model(args.model, plan)
    atomic_write_bytes(out, m.SerializeToString())
    n_parts = sum(1 for n in m.graph.node if n.name.endswith("/concat"))
    print(f"{args.model} -> {args.output}: {n_parts} ops split, {len(m.graph.node)} nodes")
    for k in kept:
        print(f"kept whole: {k['name']}: {k['reason']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .corun import bench_layer
    from .errors import RuntimeUnavailable
    from .translate import layer_from_onnx

    layer, x_shape = layer_from_onnx(args.model)
    cores = (lambda s: [int(c) for c in s.split(",")] if s else None)
    try:
        res = bench_layer(layer, x_shape, steps=args.steps, sync=args.sync, cpu_cores=cores(args.cpu_cores),
                          gpu_cores=cores(args.gpu_cores), runs=args.runs, cpu_only=args.cpu_only)
    except RuntimeUnavailable as e:
        raise RuntimeUnavailable(f"{e} (use --cpu-only to run on the CPU executor alone)") from None
    res["model"] = Path(args.model).name
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['model']}: CPU {res['cpu_ms']:.3f} ms" + (
        f", GPU {res['gpu_ms']:.3f} ms, planned {res['planned_ms']:.3f} ms (GPU share {res['planned_ratio']:.3f}), "
        f"oracle {res['oracle_ms']:.3f} ms ({res['oracle_ratio']:.3f}); speedup {res['speedup_planned']:.2f}x "
        f"planned, {res['speedup_oracle']:.2f}x oracle; sync per op (us): "
        + ", ".join(f"{k} {v:.1f}" for k, v in res["sync_us"].items())
        + "; completion noticed after (us): " + ", ".join(f"{k} {v:.1f}" for k, v in res["notify_us"].items())
        if "gpu_ms" in res else " (CPU only)"))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .calibration import run_plan
    from .plan import PlanError

    try:
        plan = json.loads(read_text_input(args.plan, "plan", MAX_JSON_BYTES))
    except json.JSONDecodeError as e:
        raise PlanError(f"{args.plan}: not a readable plan ({e})") from None
    for pid, why in (plan.get("profiles_measured_elsewhere") or {}).items():
        print(f"warning: the plan was made with {pid}, measured on {why}", file=sys.stderr)
    if plan.get("device") not in (None, "host"):
        print(f"warning: the plan was made for {plan['device']} (profiles {', '.join(plan.get('profiles', {}).values())}); "
              "here it runs on this machine's CPU and OpenCL device, whose speeds it does not describe",
              file=sys.stderr)
    cores = (lambda s: [int(c) for c in s.split(",")] if s else None)
    res = run_plan(args.model, plan, runs=args.runs, sync=args.sync, cpu_cores=cores(args.cpu_cores),
                   gpu_cores=cores(args.gpu_cores), cpu_only=args.cpu_only)
    if args.json:
        print(json.dumps(res))
        return 0
    line = f"{res['model']}: CPU only {res['cpu_ms']:.3f} ms"
    if res["gpu_ms"] is not None:
        line += (f", GPU only {res['gpu_ms']:.3f} ms, planned co-execution {res['planned_ms']:.3f} ms "
                 f"({res['speedup']:.2f}x the faster; waits {res['planned_sync_ms']:.3f} ms)")
    print(line + f"; outputs match onnxruntime: {res['outputs_match']}")
    if res["gpu_fallback"]:
        print(f"  {len(res['gpu_fallback'])} GPU-placed ops without an OpenCL kernel ran on the CPU: "
              + ", ".join(res["gpu_fallback"][:8]) + (" ..." if len(res["gpu_fallback"]) > 8 else ""))
    for o in sorted(res["ops"], key=lambda o: -o["ms"])[: args.top]:
        pred = f"  (plan {o['predicted_ms']:.3f})" if o.get("predicted_ms") is not None else ""
        print(f"  {o['on']:<3} {o['op']:<18} {o['ms']:8.3f} ms{pred}  {o['name']}")
    return 0


BOUNDARY_MODELS = "mobilenet_v2_0.35,shufflenet_v2_0.5,regnety_200mf,squeezenet1_0,mobilenet_v1_0.25,efficientnet_lite0"
# planned runs the context costs are fitted on; none of them is in bench/coexec_whole.py
CONTEXT_MODELS = "regnety_400mf,resnet50,mobilenet_v2_0.35,densenet169,resnext26_32x4d"


def _measure_context(args: argparse.Namespace, prof, res: dict, ocl, cores) -> dict:
    """Fit the context costs (:func:`coexec.calibration.fit_context`) on planned runs of
    ``--context-models``, planned with the boundary costs just measured (``res``)."""
    import tempfile

    import onnx
    from rich.progress import Progress

    from oplat.profile import load_profile

    from .calibration import context_rows, fit_context, plan_speedup
    from .plan import make_plan

    prof.meta["boundary"] = dict(res)
    prof.meta["channel_align"] = res["channel_probe"]["block"]
    gpu = load_profile(args.gpu_profile or f"{prof.meta.get('device', prof.id.split('/')[0])}/coexec-ocl")
    rows, paths = [], {}
    with tempfile.TemporaryDirectory() as tmp, Progress(transient=True) as bar:
        names = args.context_models.split(",")
        task = bar.add_task("planned runs", total=len(names))
        for name in names:
            if name.endswith(".onnx"):
                path = name
            else:
                from oplat.zoo import build

                path = str(Path(tmp) / f"{name}.onnx")
                onnx.save(build(name), path)
            # every split the planner considers worth anything, gain or not
            plan = make_plan(path, prof, gpu, dims=("channel",), min_gain=-1.0, use_context=False)
            rows.append(context_rows(path, plan, ocl, cores))
            paths[name] = path
            bar.advance(task)
        ctx = fit_context(rows) | {"gpu_profile": gpu.id}
        # how far the planner, with these costs, overestimates what a plan gains: plans
        # predicted to gain less than that are not worth leaving the faster processor
        prof.meta["boundary"]["context"] = ctx
        task = bar.add_task("planned vs single", total=len(paths))
        check = []
        for name, path in paths.items():
            plan = make_plan(path, prof, gpu, dims=("channel",), min_gain=-1.0)
            if any(o["placement"] != plan["faster_single"] for o in plan["ops"]):
                got = plan_speedup(path, plan, ocl, cores)
                check.append({"model": name, "predicted_speedup": plan["speedup"], "measured_speedup": round(got, 4),
                              "overestimate": round(plan["speedup"] / got, 4)})
            bar.advance(task)
    ctx["plan_check"] = check
    ctx["min_gain"] = round(max([c["overestimate"] - 1.0 for c in check] + [0.0]), 4)
    return ctx


def cmd_boundary(args: argparse.Namespace) -> int:
    import onnx
    from rich.progress import Progress

    from oplat.errors import OplatError
    from oplat.profile import Profile

    from .calibration import boundary_cost
    from .cpu import CpuExecutor
    from .probes import channel_block

    prof = Profile.load(args.profile)
    if prof.meta.get("processor") != "cpu":
        raise OplatError(f"{prof.id}: not a CPU profile (the boundary cost belongs to the CPU executor)")
    models = {}
    for name in args.models.split(","):
        if name.endswith(".onnx"):
            models[Path(name).stem] = onnx.load(name)
        else:
            from oplat.zoo import build

            models[name] = build(name)
    cores = [int(c) for c in args.cores.split(",")] if args.cores else None
    with Progress(transient=True) as bar:
        task = bar.add_task("measuring boundaries", total=len(models))
        res = boundary_cost(models, cores, args.runs, progress=lambda: bar.advance(task))
    cpu = CpuExecutor(cores)
    cpu.pin()
    res["channel_probe"] = channel_block(cpu)
    if args.gpu_cores:
        from .calibration import crossing_cost
        from .opencl import OclExecutor
        from .probes import contention

        ocl = OclExecutor([int(c) for c in args.gpu_cores.split(",")])
        res["crossing"] = crossing_cost(ocl, cores)
        # informational: the planner does not scale parts by it (small here)
        res["contention"] = contention(ocl, cpu)
        res["context"] = _measure_context(args, prof, res, ocl, cores)
    if not args.dry_run:
        meta_path = prof.path / "profile.json"
        meta = json.loads(meta_path.read_text())
        meta["boundary"] = res
        meta["channel_align"] = res["channel_probe"]["block"]
        atomic_write_text(meta_path, json.dumps(meta, indent=1, sort_keys=True))
    if args.json:
        print(json.dumps(res))
        return 0
    for r in res["models"]:
        print(f"  {r['model']:<22} one segment {r['whole_ms']:7.2f} ms, cut at every node {r['cut_ms']:7.2f} ms "
              f"({r['boundaries']} boundaries, {r['crossing_mb']:.1f} MB crossing)")
    print(f"{prof.id}: {res['us']:.1f} us per boundary + {res['ms_per_mb']:.4f} ms per MB crossing "
          f"(fit error {res['fit_mape']:.1%}); its convs work in blocks of {res['channel_probe']['block']} "
          f"output channels" + ("" if args.dry_run else f"; stored in {meta_path}"))
    if "crossing" in res:
        print(f"  reading what the OpenCL device wrote: +{res['crossing']['us']:.1f} us + "
              f"{res['crossing']['ms_per_mb']:.4f} ms per MB")
    if "context" in res:
        c = res["context"]
        print(f"  in planned runs ({len(c['models'])} models, {c['segments']} cut segments, "
              f"{c['launches']} launches): CPU work next to GPU work x{c['cpu_factor']:.3f} + "
              f"{c['cpu_us']:.1f} us per cut + {c['cpu_ms_per_mb']:.4f} ms per MB read; "
              f"GPU kernels x{c['gpu_factor']:.3f}; "
              f"{c['host_us']:.1f} us of driver time per GPU launch")
        for k in c["plan_check"]:
            print(f"    {k['model']:<22} plan predicted x{k['predicted_speedup']:.3f}, "
                  f"measured x{k['measured_speedup']:.3f}")
        print(f"  plans must be predicted {c['min_gain']:.1%} faster to leave the faster processor "
              "(default --min-gain)")
    if "contention" in res:
        print(f"  running at once: GPU half +{res['contention']['gpu']:.1%}, CPU half +{res['contention']['cpu']:.1%} "
              "(median over four split conv layers)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="coexec", description="CPU/GPU co-execution planning")
    from oplat import __version__

    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan", help="plan per-op CPU/GPU splits from latency predictions")
    p.add_argument("model")
    p.add_argument("--device", help="device of the shipped profiles (pixel4, s10, ...)")
    p.add_argument("--cpu-profile")
    p.add_argument("--gpu-profile")
    p.add_argument("--sync", choices=sorted(SYNC_US), default="svm",
                   help="synchronisation: svm (polling a flag in shared memory) or event waits")
    p.add_argument("--sync-us", type=float, help="sync cost per wait in microseconds (overrides --sync)")
    p.add_argument("--steps", type=int, default=16, help="ratio grid: 1/steps (default 16)")
    p.add_argument("--dims", default="channel,row", help="split dimensions to consider")
    p.add_argument("--allow-mixed", action="store_true", help="accept profiles of different devices")
    p.add_argument("--oracle", action="store_true", help="also run the exhaustive per-op search")
    p.add_argument("--min-gain", type=float, default=None,
                   help="keep the faster processor alone unless the plan is predicted this much faster "
                        "(a fraction, e.g. 0.05; default: the planner's measured overestimate stored by "
                        "'coexec boundary', else 0)")
    p.add_argument("--input-shape", action="append", default=[])
    p.add_argument("--json", action="store_true")
    p.add_argument("-o", "--output", help="write the plan JSON here")
    p.add_argument("--plot", help="PNG of per-op ratios")
    p.add_argument("--top", type=int, help="rows of the table to print")
    p.add_argument("--force", action="store_true", help="replace an existing plan JSON / PNG (and nothing else)")
    p.set_defaults(fn=cmd_plan)
    b = sub.add_parser("bench", help="measure CPU-only, GPU-only, planned and oracle co-execution of a layer")
    b.add_argument("model", help="single-layer ONNX model (Conv or Gemm/MatMul) with weights")
    b.add_argument("--sync", choices=["svm", "event", "finish"], default="svm")
    b.add_argument("--steps", type=int, default=16)
    b.add_argument("--runs", type=int, default=9)
    b.add_argument("--cpu-cores", help="cores of the CPU executor, e.g. 0")
    b.add_argument("--gpu-cores", help="cores the OpenCL device's threads run on (PoCL), e.g. 1")
    b.add_argument("--cpu-only", action="store_true", help="no OpenCL device: time the CPU executor alone")
    b.add_argument("--json", action="store_true")
    b.set_defaults(fn=cmd_bench)
    r = sub.add_parser("run", help="execute a plan on the CPU executor and the OpenCL device at once")
    r.add_argument("model", help="the ONNX model the plan was made for (with weights)")
    r.add_argument("--plan", required=True)
    r.add_argument("--runs", type=int, default=10)
    r.add_argument("--sync", choices=["svm", "event", "finish"], default="svm")
    r.add_argument("--cpu-cores", help="cores of the CPU executor, e.g. 0")
    r.add_argument("--gpu-cores", help="cores the OpenCL device's threads run on (PoCL), e.g. 1")
    r.add_argument("--cpu-only", action="store_true", help="no OpenCL device: run the CPU executor alone")
    r.add_argument("--top", type=int, default=15)
    r.add_argument("--json", action="store_true")
    r.set_defaults(fn=cmd_run)
    bd = sub.add_parser("boundary", help="measure what a processor boundary costs the CPU executor and "
                                         "store it in its profile (the planner adds it to every sync)")
    bd.add_argument("profile", help="CPU profile id or folder to store the measurement in")
    bd.add_argument("--models", default=BOUNDARY_MODELS, help="zoo models (or ONNX paths) to measure on")
    bd.add_argument("--cores", help="cores of the CPU executor, e.g. 0")
    bd.add_argument("--runs", type=int, default=9)
    bd.add_argument("--gpu-cores", help="also measure how much the executors slow each other down when they "
                                        "run at once (OpenCL device threads on these cores), e.g. 1")
    bd.add_argument("--gpu-profile", help="OpenCL profile the context runs are planned with "
                                          "(default: DEVICE/coexec-ocl)")
    bd.add_argument("--context-models", default=CONTEXT_MODELS,
                    help="zoo models (or ONNX paths) whose planned runs the context costs are fitted on "
                         "(with --gpu-cores)")
    bd.add_argument("--dry-run", action="store_true", help="measure and print, store nothing")
    bd.add_argument("--json", action="store_true")
    bd.set_defaults(fn=cmd_boundary)
    s = sub.add_parser("split", help="rewrite a model into CPU and GPU parts following a plan")
    s.add_argument("model")
    s.add_argument("plan_file", nargs="?", metavar="PLAN", help="the plan JSON (or --plan PLAN, as for run)")
    s.add_argument("--plan", dest="plan_opt", metavar="PLAN", help="the plan JSON")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--force", action="store_true", help="replace an existing ONNX file (and nothing else)")
    s.set_defaults(fn=cmd_split)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``coexec`` console script."""
    from oplat.errors import run_cli

    return run_cli("coexec", build_parser(), argv)

if __name__ == "__main__":
    sys.exit(main())
