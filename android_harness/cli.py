"""``android-harness``: devices, info, bench and collect on phones over adb."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from oplat.errors import OplatError
from oplat.outputs import check_output_file, check_output_folder
from oplat.zoo import zoo_dir


def cmd_devices(args: argparse.Namespace) -> int:
    from .adb import list_devices

    devs = list_devices()
    if args.json:
        print(json.dumps(devs))
    else:
        for d in devs:
            print(f"{d['serial']}\t{d['state']}\t{d['model']}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .adb import Device
    from .facts import device_facts

    facts = device_facts(Device(_serial(args)))
    if args.json:
        print(json.dumps(facts))
        return 0
    print(f"{facts['manufacturer']} {facts['model']} ({facts['soc']}, SDK {facts['sdk']}, {facts['abi']})")
    for c in facts["cpu_clusters"]:
        print(f"  {c['name']:>5}: cpus {c['cpus']} max {c['max_freq_khz']} kHz governor {c['governor']} mask {c['mask']}")
    g = facts["gpu"]
    print(f"  gpu: {g.get('model')} ({g.get('family')})")
    print(f"  thermal: {facts['thermal']}  battery: {facts['battery']}")
    return 0


def _predicted(model: str, facts: dict[str, Any], gpu: bool, cores: str | None, threads: int,
               profile: str | None) -> tuple[str | None, float | None]:
    """A profile's prediction for the benchmarked model, when one exists for this phone."""
    from oplat.profile import list_profiles, load_profile

    if profile is None:
        name = str(facts.get("model", "")).lower().replace(" ", "")
        cset = cores or "large"
        if cset in ("large", "med", "small"):  # a whole cluster: the core set of that many threads
            cset = f"{threads}{cset}"
        want = "tflite-gpu" if gpu else f"tflite-cpu-{cset}"
        profile = next((pid for pid, _ in list_profiles() if pid == f"{name}/{want}"), None)
    if profile is None:
        return None, None
    from oplat.model_io import load_model

    return profile, load_profile(profile).predict(load_model(model)).total_ms


def cmd_bench(args: argparse.Namespace) -> int:
    from .adb import Device
    from .bench import ThermalGuard, run_benchmark_model
    from .facts import device_facts

    dev = Device(_serial(args))
    facts = device_facts(dev)
    guard = ThermalGuard(dev, max_wait_s=args.thermal_wait) if args.thermal_wait > 0 else None
    from .measure import as_tflite

    model = str(as_tflite(args.model))  # benchmark_model runs .tflite: convert as the TFLite converter would
    res = run_benchmark_model(dev, model, args.benchmark_binary, threads=args.threads, cores=args.cores,
                              gpu=args.gpu, op_profiling=args.op_profiling, runs=args.runs, warmup=args.warmup,
                              cooldown_s=args.cooldown, guard=guard, facts=facts)
    pid, pred = _predicted(args.model, facts, args.gpu, args.cores, args.threads, args.profile)
    res["predicted_ms"], res["profile"] = pred, pid
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    if args.json:
        print(json.dumps({k: v for k, v in res.items()}))
        return 0
    line = f"{res['model']} on {facts['model']} ({res['serial']}): measured {res['avg_ms']:.3f} ms"
    if pred is not None:
        line += f", predicted {pred:.3f} ms by {pid} ({(pred - res['avg_ms']) / res['avg_ms']:+.1%})"
    print(line)
    for op in res["ops"][: args.top]:
        print(f"  {op['type']:<26} {op['avg_ms']:.3f} ms  {op['name']}")
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .adb import Device
    from .measure import measure_csv

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task("measuring", total=None)

        def step(model: str, ms: float | None) -> None:
            bar.update(task, advance=1, description=Path(model).stem)
            if ms is not None:
                bar.console.print(f"{model}: {ms:.3f} ms")

        totals = measure_csv(Device(_serial(args)), args.csv, args.benchmark_binary, threads=args.threads,
                             cores=args.cores, gpu=args.gpu, runs=args.runs, warmup=args.warmup,
                             cooldown_s=args.cooldown, thermal_wait_s=args.thermal_wait,
                             on_start=lambda n: bar.update(task, total=n), on_model=step)
    print(f"{args.csv}: {totals['measured']} measured now, {totals['already']} already, {totals['total']} rows")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    import threading

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from oplat.collect.run import parse_budget
    from oplat.train import load_graphs

    from .collect import collect_phone, phone_configs

    graphs = load_graphs(zoo_dir("cnn_zoo"), names=args.zoo_models or None)
    configs = phone_configs(graphs.values(), args.configs, seed=args.seed)
    budget = parse_budget(args.budget) if args.budget else None
    serials = [s for s in _serial(args).split(",") if s]
    out = Path(args.out)
    check_output_file(out, force=True, kind="dataset", is_kind=lambda p: True)  # appended to: resumes
    # several phones at once: one worker thread per serial, one dataset per phone
    outs = {s: out if len(serials) == 1 else out.with_name(f"{out.stem}.{s}{out.suffix or '.csv'}") for s in serials}
    results: dict[str, Any] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        tasks = {s: bar.add_task(f"collect {s}", total=len(configs)) for s in serials}

        def work(serial: str) -> None:
            try:
                results[serial] = collect_phone(serial, args.benchmark_binary, configs, outs[serial],
                                                processor=args.processor, threads=args.threads, cores=args.cores,
                                                budget_s=budget, runs=args.runs, thermal=not args.no_thermal,
                                                on_row=lambda r: bar.advance(tasks[serial]))
            except OplatError as e:
                results[serial] = {"error": str(e)}

        workers = [threading.Thread(target=work, args=(s,)) for s in serials]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    for s in serials:
        print(f"{s}: {outs[s]}: {json.dumps(results.get(s))}")
    return 2 if any("error" in (results.get(s) or {}) for s in serials) else 0


def cmd_profile(args: argparse.Namespace) -> int:
    """A phone's profile from nothing measured: per-op rows, whole models, the end-to-end
    term and held-out accuracy (resumable)."""
    from oplat.collect.run import parse_budget

    from .profile import profile_phone

    out = check_output_folder(args.out, force=True, kind="profiles", is_kind=lambda p: True)
    prof, rep = profile_phone(_serial(args), args.benchmark_binary, out,
                              parse_budget(args.budget) if args.budget else None,
                              processor="gpu" if args.gpu else "cpu", threads=args.threads, cores=args.cores,
                              configs=args.configs, fit_models=args.fit_models, test_models=args.test_models,
                              runs=args.runs, thermal=not args.no_thermal,
                              progress=lambda stage: print(stage, file=sys.stderr, flush=True))
    acc = rep["held_out"]["all"]
    print(f"{rep['folder']}: {prof.id} from {rep['per_op_rows']} per-op rows and {rep['fit_models']} whole models; "
          f"held-out on {acc.get('n', 0)} other models: MAPE {acc.get('mape', float('nan')):.1%}, "
          f"{acc.get('within_10', 0):.0%} within ±10%")
    return 0


def _serial(args: argparse.Namespace) -> str:
    """``--serial``, or the one device attached (a clear error for none or several)."""
    if args.serial:
        return args.serial
    from .adb import DeviceError, list_devices

    ready = [d["serial"] for d in list_devices() if d["state"] == "device"]
    if len(ready) != 1:
        raise DeviceError("no device attached" if not ready else
                          f"{len(ready)} devices attached ({', '.join(ready)}): choose one with --serial")
    return ready[0]


def _run_options(p: argparse.ArgumentParser, cooldown_help: str) -> None:
    """The options of one benchmark_model run on one phone (``bench`` and ``measure``)."""
    p.add_argument("--serial", help="the phone (default: the only one attached)")
    p.add_argument("--benchmark-binary", help="benchmark_model for the phone's ABI (pushed once, cached)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--core-set", "--cores", dest="cores",
                   help="the phone's CPU cores: a cluster (large/med/small), a core set (1large2med) or a hex mask")
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--cooldown", type=float, default=0.0, help=cooldown_help)
    p.add_argument("--thermal-wait", type=float, default=60.0, help="max seconds to wait for baseline temperature")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="android-harness", description="benchmark and profile phones over adb")
    from oplat import __version__

    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("devices", help="list attached devices")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_devices)
    p = sub.add_parser("info", help="device facts: identity, CPU clusters, GPU, thermal, battery")
    p.add_argument("--serial", help="the phone (default: the only one attached)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_info)
    p = sub.add_parser("bench", help="run benchmark_model on a .tflite model (an .onnx model is converted first)")
    p.add_argument("model")
    _run_options(p, "seconds to sleep before the run")
    p.add_argument("--op-profiling", action="store_true")
    p.add_argument("--profile", help="profile to compare with (default: one named after the phone, if any)")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("-o", "--output", "--out", dest="out", help="also write the result JSON here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_bench)
    p = sub.add_parser("measure", help="fill a model,latency_ms CSV (oplat suggest --csv) with end-to-end "
                                       "latencies measured on the phone (resumable)")
    p.add_argument("csv")
    _run_options(p, "seconds to sleep before each model")
    p.set_defaults(fn=cmd_measure)
    p = sub.add_parser("collect", help="measure single-op models on a phone into a dataset (resumable)")
    p.add_argument("--serial", help="one serial, or several comma-separated (one worker each); default: the only one attached")
    p.add_argument("--benchmark-binary", required=True)
    p.add_argument("--processor", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--core-set", "--cores", dest="cores",
                   help="the phone's CPU cores: a cluster (large/med/small), a core set (1large2med) or a hex mask")
    p.add_argument("--configs", type=int, default=200)
    p.add_argument("--zoo-models", nargs="*", default=[])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--budget")
    p.add_argument("--no-thermal", action="store_true")
    p.add_argument("-o", "--output", "--out", dest="out", required=True, help="dataset file (resumable)")
    p.set_defaults(fn=cmd_collect)
    p = sub.add_parser("profile", help="a phone's profile from nothing measured (per-op rows, whole models, "
                                       "end-to-end term, held-out accuracy); resumable")
    p.add_argument("--serial", help="the phone (default: the only one attached)")
    p.add_argument("--benchmark-binary", required=True)
    p.add_argument("--gpu", action="store_true", help="profile the GPU delegate instead of the CPU")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--core-set", "--cores", dest="cores",
                   help="the phone's CPU cores: a cluster (large/med/small), a core set (1large2med) or a hex mask")
    p.add_argument("--budget", help="per-op collection time (90s, 10m, 1h)")
    p.add_argument("--configs", type=int, default=300, help="per-op configs to measure at most")
    p.add_argument("--fit-models", type=int, default=24, help="whole models the end-to-end term is fitted on")
    p.add_argument("--test-models", type=int, default=12, help="whole models held out to score the profile")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--no-thermal", action="store_true")
    p.add_argument("-o", "--output", "--out", dest="out", required=True,
                   help="folder for the profile (DIR/<device>/tflite-...) and its measurements")
    p.set_defaults(fn=cmd_profile)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``android-harness`` console script."""
    from oplat.errors import run_cli

    return run_cli("android-harness", build_parser(), argv, user_errors=(ValueError,))

if __name__ == "__main__":
    sys.exit(main())
