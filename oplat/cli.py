"""Command line: a thin layer over the Python API.

    oplat predict MODEL --profile ID [--input-shape name=1x3x224x224] [--json] [--plot out.png]
    oplat train --ops-csv OPS.csv --e2e-csv E2E.csv [--devices a,b] [--exclude-models a,b] --out DIR
    oplat evaluate [--ops-csv ...] [--e2e-csv ...] [--devices ...] [--folds 10] --out results.json [--plot out.png]
    oplat profiles
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path
from typing import Sequence

from .errors import OplatError
from .outputs import (MAX_MODEL_BYTES, atomic_write_bytes, atomic_write_text, check_output_file, check_output_folder,
                      is_json_file, is_onnx_file, is_png, is_tflite_file, regular_input)
from .zoo import zoo_dir

DEFAULT_GRAPHS = zoo_dir("cnn_zoo")


def strict_json(obj) -> str:
    """JSON that any parser takes: no NaN or Infinity (null instead), names as text."""
    import math

    def clean(x):
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, bytes):
            return x.decode("utf-8", "backslashreplace")
        return x

    return json.dumps(clean(obj), allow_nan=False, default=str)


def _csv_list(s: str | None) -> list[str]:
    return [x.strip() for x in (s or "").split(",") if x.strip()]


def _model_paths(specs: Sequence[str]) -> list[str]:
    """Model files named by paths, folders (their .onnx and .tflite files) and quoted globs,
    in the order given (each folder or glob sorted)."""
    import glob

    out: list[str] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in (".onnx", ".tflite") and f.is_file())
            if not found:
                raise OplatError(f"{spec}: a folder with no .onnx or .tflite files")
            out += found
        elif any(c in spec for c in "*?[") and not p.exists():
            found = sorted(glob.glob(spec))
            if not found:
                raise OplatError(f"{spec}: no file matches")
            out += found
        else:
            out.append(spec)
    return out


def _predict_many(args: argparse.Namespace, profile) -> int:
    """``oplat predict`` of many networks: a search space's architectures (--space, --archs)
    or several files; one JSON object per line (--json-lines) or a table."""
    from .errors import ModelLoadError
    from .outputs import read_text_input
    from .sweep import predict_space, read_archs, summary

    records: list[dict] = []
    failed = incomplete = approximated = 0

    def emit(rec: dict) -> None:
        nonlocal incomplete, approximated
        incomplete += rec.get("complete") is False
        approximated += bool((rec.get("coverage") or {}).get("approximated_ops"))
        if args.json_lines:
            print(strict_json(rec), flush=False)
        else:
            records.append(rec)

    if args.space:
        from .spaces import get_space

        if args.model:
            raise OplatError("give either model files or --space with --archs, not both")
        if args.jobs < 0:
            raise OplatError("--jobs takes 0 (every core) or a positive number of worker processes")
        if not args.archs:
            raise OplatError("--space needs --archs FILE (one architecture string per line; - for stdin)")
        try:
            space = get_space(args.space)
        except KeyError as e:
            raise OplatError(str(e.args[0])) from None
        if args.archs == "-":
            from .outputs import MAX_CSV_BYTES

            text = sys.stdin.read(MAX_CSV_BYTES + 1)
            if len(text) > MAX_CSV_BYTES:
                raise OplatError(f"-: more than {MAX_CSV_BYTES // 2 ** 20} MB of architecture strings on stdin; "
                                 "split the list")
        else:
            text = read_text_input(args.archs, "architecture file")
        archs = read_archs(text.splitlines())
        if not archs:
            raise OplatError(f"{args.archs}: no architecture strings in it")
        try:
            from .sweep import check_archs

            check_archs(space, archs)
        except ValueError as e:
            raise OplatError(f"{args.archs}: {e}") from None
        with _progress(stderr=True) as bar:
            task = bar.add_task(f"{space.name} on {profile.id}", total=len(archs))
            for rec in predict_space(profile, space, archs, jobs=None if args.jobs == 0 else args.jobs,
                                     progress=lambda n: bar.advance(task, n)):
                emit(rec)
        label = "networks"
    else:
        from .model_io import load_model
        from .onnx_loader import parse_input_shapes
        from .policy import PredictionRefused, check_batch

        shapes = parse_input_shapes(args.input_shape)
        paths = _model_paths(args.model)
        with _progress(stderr=True) as bar:
            task = bar.add_task(f"models on {profile.id}", total=len(paths))
            for path in paths:
                try:
                    graph = load_model(path, shapes)
                    check_batch(profile, graph, path)
                    emit({"model": path, **summary(profile.predict(graph))})
                except (ModelLoadError, PredictionRefused, OplatError) as e:
                    failed += 1
                    emit({"model": path, "error": str(e)})
                    print(f"error: {e}", file=sys.stderr)
                bar.advance(task)
        label = "models"
    sys.stdout.flush()
    if not args.json_lines:
        from rich.table import Table

        table = Table(title=f"{len(records)} {label} on {profile.id}")
        table.add_column("arch" if args.space else "model")
        table.add_column("ms", justify="right")
        for r in records:
            ms = r.get("total_ms")
            shown = r.get("error") or (f"{ms:.3f}" if r.get("complete") else f">= {ms:.3f} (incomplete)")
            table.add_row(r.get("arch") or r.get("model"), shown)
        _console().print(table)
    if incomplete:
        print(f"warning: {incomplete} of the {label} were predicted incompletely (complete: false; their "
              "total_ms is a lower bound)", file=sys.stderr)
    if approximated:
        print(f"warning: {approximated} of the {label} have kernels outside what {profile.id}'s features describe "
              "(coverage.approximated_ops; priced by a stand-in, see oplat predict of one of them)", file=sys.stderr)
    if failed or (args.strict and (incomplete or approximated)):
        return 2
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .model_io import load_model
    from .onnx_loader import parse_input_shapes
    from .policy import check_batch, judge
    from .profile import load_profile

    if not args.model and not args.space:
        raise OplatError("give a model file (or several, a folder, a quoted glob), or --space NAME --archs FILE")
    profile = load_profile(args.profile)
    elsewhere = profile.measured_elsewhere()
    if elsewhere:
        print(f"warning: {profile.id} was measured on {elsewhere}: its predictions describe that machine "
              "(oplat collect and oplat train make a profile of this one)", file=sys.stderr)
    if args.space or args.json_lines or len(args.model) > 1 or Path(args.model[0]).is_dir() or (
            any(c in args.model[0] for c in "*?[") and not Path(args.model[0]).exists()):
        if args.plot or args.csv or args.json:
            raise OplatError("--plot, --csv and --json take one model; many models print --json-lines")
        return _predict_many(args, profile)
    args.model = args.model[0]
    if args.plot:
        check_output_file(args.plot, args.force, "PNG image", is_png, inputs=[args.model])
    graph = load_model(args.model, parse_input_shapes(args.input_shape))
    check_batch(profile, graph, args.model)
    res = profile.predict(graph)
    for warning in judge(res, graph, profile, strict=args.strict, label=args.model):  # on stderr, also with --json
        print(f"warning: {warning}", file=sys.stderr)
    if args.plot:
        from .report import breakdown_png

        breakdown_png(res, args.plot, Path(args.model).name)
    if args.json:
        print(strict_json(res.to_dict()))
        return 0
    from .report import kernel_shape

    if args.csv:  # the per-op table for spreadsheets and scripts
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["index", "name", "kernel", "impl", "linked", "shape", "predicted_ms"])
        for i, o in enumerate(res.ops):
            w.writerow([i, o.name, o.kernel, o.impl, "+".join(o.linked), kernel_shape(o.kernel, o.params),
                        "" if o.predicted_ms is None else f"{o.predicted_ms:.6g}"])
        return 0
    from rich.table import Table

    console = _console()
    table = Table(title=f"{Path(args.model).name} on {profile.id}", show_lines=False)
    for col, just in (("#", "right"), ("kernel", "left"), ("impl", "left"), ("linked", "left"),
                      ("shape", "left"), ("ms", "right")):
        table.add_column(col, justify=just)
    for i, o in enumerate(res.ops if args.top is None else res.ops[:args.top]):
        shape = kernel_shape(o.kernel, o.params)
        table.add_row(str(i), o.kernel, o.impl, "+".join(o.linked), shape,
                      "-" if o.predicted_ms is None else f"{o.predicted_ms:.3f}")
    if args.top is None or args.top > 0:
        console.print(table)
    console.print(f"kernels with a regressor: {len(res.ops)}  ops sum: {res.ops_ms:.2f} ms  "
                  f"end-to-end term (dispatch, unfused element-wise, layout, calibration): "
                  f"{res.overhead_ms:+.2f} ms")
    if res.complete:
        console.print(f"[bold]predicted end-to-end latency: {res.total_ms:.2f} ms[/bold]")
    else:
        names = ", ".join(f"{u['op_type']} ({u['name']})" for u in res.unsupported[:10])
        console.print(f"[yellow]not predicted, not counted: {len(res.unsupported)} ops: {names}[/yellow]")
        console.print(f"[bold]predicted end-to-end latency: at least {res.total_ms:.2f} ms[/bold] "
                      f"(lower bound: {res.coverage.get('flops', res.coverage.get('ops', 0)):.0%} of the "
                      "model's FLOPs predicted)")
    return 0


def _load_training_data(args: argparse.Namespace):
    from .datasets import SHARED_DATA, load_phone_e2e, load_phone_gpu_ops

    ops_csv = Path(args.ops_csv) if args.ops_csv else SHARED_DATA / "tflite_cnn_ops_gpu.csv"
    e2e_csv = Path(args.e2e_csv) if args.e2e_csv else SHARED_DATA / "tflite_cnn_e2e.csv"
    devices = _csv_list(args.devices) or None
    rows = load_phone_gpu_ops(ops_csv, devices)
    e2e = load_phone_e2e(e2e_csv, "gpu")
    devs = devices or sorted({r.device for r in rows})
    return rows, e2e, devs, f"mobile-ml-benchmark:{ops_csv.name}+{e2e_csv.name}"


def _progress(stderr: bool = False):
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
                    console=Console(stderr=True) if stderr else None)


def cmd_train(args: argparse.Namespace) -> int:
    from .train import ProfileTrainer, load_graphs

    if args.data:
        return _train_from_collected(args)

    terms = _e2e_terms(args.e2e_term)
    rows, e2e, devs, source = _load_training_data(args)
    out = Path(args.out)
    inputs = [p for p in (args.ops_csv, args.e2e_csv, args.graphs) if p]
    for dev in devs:  # before the slow part, not only when writing
        check_output_folder(out / dev / "tflite-gpu", args.force, inputs=inputs)
    excl = _csv_list(args.exclude_models)
    graphs = load_graphs(args.graphs)
    cache: dict = {}
    with _progress() as prog:
        task = prog.add_task("training", total=len(devs))
        for dev in devs:
            prog.update(task, description=f"training {dev}")
            prof = ProfileTrainer(e2e_term=terms, source=source).fit(rows, e2e.get(dev, {}), graphs, dev,
                                                                     exclude_models=excl, lowered_cache=cache)
            folder = prof.save(out / dev / "tflite-gpu")
            prog.advance(task)
            prog.console.print(f"{prof.id}: {prof.meta['training']['rows']} rows -> {folder}")
    return 0


def _e2e_terms(spec: str) -> list[str]:
    """``--e2e-term``: ``auto`` (every known term, chosen by CV) or a comma list of names."""
    from .overhead import e2e_terms

    try:
        return e2e_terms(spec)
    except ValueError as e:
        raise OplatError(f"--e2e-term: {e}") from None


def _train_from_collected(args: argparse.Namespace) -> int:
    """Profiles from ``oplat collect`` datasets, one per device/framework/processor in them."""
    from .collect.profiles import profiles_from_dataset

    out = Path(args.out)
    check_output_folder(out, force=True, kind="profiles", is_kind=lambda p: True, inputs=args.data)
    for path in args.data:
        for prof, n_rows in profiles_from_dataset(path):
            folder = check_output_folder(out / prof.meta["device"] / prof.id.split("/", 1)[1], args.force,
                                         inputs=args.data)
            folder = prof.save(folder)
            print(f"{prof.id}: {n_rows} rows -> {folder}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import cross_validate
    from .report import scatter_png
    from .train import load_graphs

    terms = _e2e_terms(args.e2e_term)
    inputs = [p for p in (args.ops_csv, args.e2e_csv, args.graphs) if p]
    if args.out:
        check_output_file(args.out, args.force, "JSON file", is_json_file, inputs=inputs)
    if args.plot:
        check_output_file(args.plot, args.force, "PNG image", is_png, inputs=inputs)
    rows, e2e, devs, source = _load_training_data(args)
    graphs = load_graphs(args.graphs)
    with _progress() as prog:
        task = prog.add_task("cross-validation", total=len(devs) * args.folds)
        res = cross_validate(rows, e2e, graphs, devs, folds=args.folds, seed=args.seed,
                             progress=lambda s: prog.update(task, advance=1, description=s), source=source,
                             e2e_term=terms)
    points = res.pop("_points")
    res["graphs"] = str(args.graphs)
    if args.plot:
        scatter_png(points, args.plot)
        res["plot"] = args.plot
    if args.out:
        atomic_write_text(args.out, json.dumps(res, indent=1))
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"grouped {args.folds}-fold CV (held-out models)")
    for c in ("device", "op MAPE", "op ±10%", "e2e MAPE", "e2e RMSPE", "e2e ±10%", "e2e ±5%"):
        t.add_column(c, justify="right")
    for dev, v in res["devices"].items():
        o, e = v["per_op"], v["end_to_end"]
        t.add_row(dev, f"{o['mape']:.1%}", f"{o['within_10']:.1%}", f"{e.get('mape', 0):.1%}",
                  f"{e.get('rmspe', 0):.1%}", f"{e.get('within_10', 0):.1%}", f"{e.get('within_5', 0):.1%}")
    Console().print(t)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import (blend_library, calibrate_profile, choose_base, read_measurements, refuse_overwrite,
                            setting_mismatches, write_profile)
    from .model_io import load_model
    from .profile import load_profile

    rows = read_measurements(args.measurements)
    inputs = [args.measurements, *(r.model for r in rows)]
    out = refuse_overwrite(args.out, args.force, inputs)  # before the slow part, not only when writing
    graphs = [load_model(r.model) for r in rows]
    y = [r.latency_ms for r in rows]
    base_id = args.base
    if base_id == "auto":
        base_id, scores = choose_base(graphs, y)
        print(f"base chosen: {base_id} (calibrated leave-one-out MAPE {scores[base_id]:.1%}; "
              f"{len(scores)} profiles tried)")
    base = load_profile(base_id)
    for warning in setting_mismatches(Path(args.measurements), base.meta):
        print(f"warning: {warning}", file=sys.stderr)
    skip = [d for d in (args.exclude_devices or "").split(",") if d]
    library = blend_library(base, exclude_devices=skip) if args.method in ("auto", "blend") else None
    prof, rep = calibrate_profile(base, graphs, y, None if args.method == "auto" else args.method, library)
    folder = write_profile(prof, out, force=args.force, inputs=inputs)
    loo = rep["loo_mape"].get(rep["method"])
    print(f"{folder}: {rep['method']} calibration of {rep['base']} from {rep['measurements']} measurements; "
          f"MAPE on them {rep['base_mape']:.1%} before, leave-one-out {loo:.1%} after")
    if rep["method"] == "blend":
        print("blend of " + ", ".join(f"{pid} x{w:.3g}" for pid, w in rep["members"].items())
              + f"; fixed cost {rep['fixed_ms']:.3g} ms")
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    from .calibrate import blend_library, suggest_models, write_template
    from .profile import load_profile
    from .train import load_graphs

    folder = Path(args.models)
    if args.csv:  # before the slow part: an existing CSV is only merged into with --force
        check_output_file(args.csv, args.force, "measurements CSV", lambda p: True)
    base = load_profile(args.base)
    skip = [d for d in (args.exclude_devices or "").split(",") if d]
    library = blend_library(base, exclude_devices=skip)
    if len(library) < 2:
        raise OplatError(f"{base.id}: no other profile can blend with it, so calibration corrects it alone; "
                         "oplat suggest designs measurements for blends (CPU profiles)")
    if args.space:
        return _suggest_from_space(args, library)
    n_files = len(list(folder.glob("*.onnx")))
    if not n_files:
        raise OplatError(f"no .onnx models in {folder}")
    with _progress(stderr=True) as prog:  # stdout is the list of models
        task = prog.add_task("loading models", total=n_files)
        graphs = load_graphs(folder, progress=lambda _: prog.advance(task))
        task = prog.add_task("predicting them with each profile", total=len(library))
        names = suggest_models(library, graphs, args.k, progress=lambda _: prog.advance(task),
                               max_ms=args.max_ms)
    paths = [folder / f"{n}.onnx" for n in names]
    for p in map(Path.absolute, paths):  # not resolved: a symlinked model keeps the name it was given
        print(p.relative_to(Path.cwd()) if p.is_relative_to(Path.cwd()) else p)
    if args.csv:
        out, kept = write_template(paths, args.csv, force=args.force)
        if kept:
            print(f"{out}: kept the {kept} latencies already measured in it", file=sys.stderr)
        print(f"{out}: measure the models (android-harness measure {out} --serial SERIAL) or fill in "
              f"latency_ms by hand, then oplat calibrate --base {args.base} --measurements {out} --out DIR",
              file=sys.stderr)
    return 0


def _is_suggested_folder(p: Path) -> bool:
    return all(f.suffix == ".onnx" or f.name == "archs.txt" for f in p.iterdir())


def _suggest_from_space(args: argparse.Namespace, library) -> int:
    """``oplat suggest --space``: the networks of a search space most worth measuring,
    chosen among ``--candidates`` sampled ones; with ``--csv``, their ONNX files (random
    weights, to measure) in ``<csv>.models/`` and the template listing them."""
    import numpy as np

    from .calibrate import suggest_models, write_template
    from .outputs import replace_folder
    from .spaces import get_space

    try:
        space = get_space(args.space)
    except KeyError as e:
        raise OplatError(str(e.args[0])) from None
    if args.candidates < args.k:
        raise OplatError(f"--candidates {args.candidates} is fewer than -k {args.k}")
    models_dir = Path(str(args.csv) + ".models") if args.csv else None
    if models_dir is not None:
        check_output_folder(models_dir, args.force, "folder of suggested networks", _is_suggested_folder)
    rng = np.random.default_rng(args.seed)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(args.candidates)))
    with _progress(stderr=True) as prog:
        task = prog.add_task(f"building {len(archs)} {space.name} networks", total=len(archs))
        graphs = {}
        for a in archs:
            graphs[a] = space.graph(a)
            prog.advance(task)
        task = prog.add_task("predicting them with each profile", total=len(library))
        chosen = suggest_models(library, graphs, args.k, progress=lambda _: prog.advance(task), max_ms=args.max_ms)
    for a in chosen:
        print(a)
    if models_dir is None:
        return 0
    names = [f"{space.name}_{i:02d}.onnx" for i in range(len(chosen))]

    def fill(tmp: Path) -> None:
        for name, a in zip(names, chosen):
            atomic_write_bytes(tmp / name, space.onnx(a, graph_only=False).SerializeToString())
        atomic_write_text(tmp / "archs.txt", "".join(f"{n} {a}\n" for n, a in zip(names, chosen)))

    replace_folder(models_dir, fill, _is_suggested_folder, lambda p: {f.name for f in p.iterdir()},
                   "folder of suggested networks")
    out, kept = write_template([models_dir / n for n in names], args.csv, force=args.force)
    print(f"{out}: measure the {len(names)} networks in {models_dir} (android-harness measure {out} --serial "
          f"SERIAL) or fill in latency_ms by hand, then oplat calibrate --base {args.base} --measurements {out} "
          "--out DIR --method per-key", file=sys.stderr)
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    from .profile import list_profiles
    from .report import profile_summary

    rows = []
    for pid, folder in list_profiles():
        meta = json.loads((folder / "profile.json").read_text())
        if ((args.device and meta.get("device") != args.device)
                or (args.processor and meta.get("processor") != args.processor)
                or (args.framework and meta.get("framework") != args.framework)
                or (args.match and not fnmatch.fnmatch(pid, args.match))):
            continue
        what, acc = profile_summary(meta)
        e2e = (meta.get("accuracy") or {}).get("end_to_end") or {}
        rows.append({"id": pid, "device": meta.get("device"), "framework": meta.get("framework"),
                     "processor": meta.get("processor"), "precision": meta.get("precision"), "describes": what,
                     "accuracy": acc, "e2e_mape": e2e.get("mape"), "e2e_within_10": e2e.get("within_10"),
                     "folder": str(folder)})
    if not rows:
        raise OplatError("no profile matches those filters (see 'oplat profiles')")
    if args.json:
        print(strict_json(rows))
        return 0
    print("id\tdescribes\theld-out accuracy")
    for r in rows:
        print(f"{r['id']}\t{r['describes']}\t{r['accuracy']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Which phone, processor or framework runs these models fastest: every model on every
    matching profile, one table (or JSON), and a grouped bar chart with --plot."""
    from .compare import compare_models
    from .onnx_loader import parse_input_shapes

    if args.plot:
        check_output_file(args.plot, args.force, "PNG image", is_png, inputs=args.models)
    with _progress(stderr=True) as prog:
        task = prog.add_task("predicting", total=None)
        ids, accuracy, table = compare_models(args.models, args.profiles, parse_input_shapes(args.input_shape),
                                              strict=args.strict,
                                              progress=lambda n: prog.update(task, total=n, advance=1))
    if args.plot:
        from .report import compare_png

        compare_png(table, accuracy, args.plot)
    if args.json:
        print(strict_json({"profiles": {p: {"e2e_mape": accuracy[p]} for p in ids}, "models": table}))
        return 0
    from rich.table import Table

    t = Table(title="predicted latency (ms); held-out end-to-end MAPE per profile", show_lines=False)
    t.add_column("profile")
    t.add_column("MAPE", justify="right")
    for m in args.models:
        t.add_column(Path(m).name, justify="right")
    for pid in ids:
        cells = []
        for m in args.models:
            r = table[m][pid]
            cells.append("refused" if r["total_ms"] is None else
                         f"{r['total_ms']:.2f}" + ("" if r["complete"] else " (lower bound)"))
        mape = accuracy[pid]
        t.add_row(pid, "-" if mape is None else f"{mape:.1%}", *cells)
    _console().print(t)
    for m in args.models:
        ok = [(r["total_ms"], pid) for pid, r in table[m].items() if r["total_ms"] is not None and r["complete"]]
        if ok:
            ms, pid = min(ok)
            print(f"fastest for {Path(m).name}: {pid} ({ms:.2f} ms)")
    return 0


def _console():
    """A rich console that does not wrap tables when piped (a wide virtual terminal)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=240)


def cmd_zoo(args: argparse.Namespace) -> int:
    from .zoo import build, list_models

    if args.zoo_cmd == "list":
        for name in list_models():
            print(name)
        return 0
    if args.zoo_cmd == "spaces":
        from .spaces import get_space, list_spaces

        for name in list_spaces():
            print(f"{name}: {get_space(name).description}")
        return 0
    out = check_output_file(args.output, args.force, "ONNX model", is_onnx_file)
    try:
        model = build(args.name, graph_only=args.graph_only)
    except KeyError:
        raise OplatError(f"unknown zoo model {args.name!r} (see 'oplat zoo list'; or <space>:<arch> "
                         "for a search space: oplat zoo spaces)") from None
    except ValueError as e:
        raise OplatError(str(e)) from None
    data = model.SerializeToString()
    atomic_write_bytes(out, data)
    print(f"{args.name} -> {out} ({len(data) // 1024} KB{', graph only' if args.graph_only else ''})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .errors import ModelLoadError
    from .onnx2tflite import onnx_to_tflite
    from .onnx_loader import parse_input_shapes

    shapes = parse_input_shapes(args.input_shape)
    regular_input(args.model, "model file", MAX_MODEL_BYTES)
    out = check_output_file(args.out, args.force, "TFLite model", is_tflite_file, inputs=[args.model])
    from .graph_only import load_with_weights

    try:
        model = load_with_weights(args.model)  # real weights when its external data is beside it
    except Exception as e:
        raise ModelLoadError(f"{args.model}: not a readable ONNX model ({str(e).splitlines()[0]})") from None
    data = onnx_to_tflite(model, shapes, nhwc_inputs=not args.nchw_inputs)
    atomic_write_bytes(out, data)
    print(f"{args.model} -> {out} ({len(data) // 1024} KB)")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from .collect.backends import make_backend
    from .collect.ops import config_id
    from .collect.run import collect, collect_adaptive, open_store, parse_budget
    from .collect.sampler import default_configs, select_kernels
    from .train import load_graphs

    budget = parse_budget(args.budget) if args.budget else None
    cores = [int(c) for c in args.cores.split(",")] if args.cores else None
    out = Path(args.out)
    check_output_file(out, force=True, kind="dataset", is_kind=lambda p: True,  # appended to: resumes
                      inputs=[args.graphs])
    backend = make_backend(args.backend, args.threads, cores)
    store = open_store(out, backend, args.device)
    configs = default_configs(load_graphs(args.graphs).values(), args.max_configs, seed=args.seed,
                              lowering=backend.lowering)
    if args.kernels:
        configs = select_kernels(configs, args.kernels)
    done = store.done_ids()
    todo = len({config_id(backend.adapt(c)) for c in configs} - done)
    with _progress() as prog:
        task = prog.add_task(f"collect {args.backend} x{args.threads}", total=todo)
        if args.adaptive:
            counts = collect_adaptive(backend, configs, store, args.device, budget, batch=args.batch,
                                      seed=args.seed, on_row=lambda r: prog.update(task, advance=1),
                                      strategy=args.strategy)
        else:
            counts = collect(backend, configs, store, args.device, budget,
                             on_row=lambda r: prog.update(task, advance=1))
    print(f"{args.out}: measured {counts['measured']}, failed {counts['failed']}, "
          f"already there {counts['skipped']}" + (f", repeated configs {counts['repeated']}" if counts.get("repeated")
                                                  else "") + f"; {len(store.rows())} rows in the dataset")
    return 0


def cmd_profile_device(args: argparse.Namespace) -> int:
    """Profile this machine from nothing measured: per-op rows, whole models, the end-to-end
    term and held-out accuracy, within --budget, resumable."""
    from .collect.backends import make_backend
    from .collect.device import profile_device
    from .collect.run import parse_budget

    out = check_output_folder(args.out, force=True, kind="profiles", is_kind=lambda p: True)
    budget = parse_budget(args.budget)
    cores = [int(c) for c in args.cores.split(",")] if args.cores else None
    backend = make_backend(args.backend, args.threads, cores)
    with _progress() as prog:
        task = prog.add_task("profiling", total=100)
        prof, rep = profile_device(backend, out, budget,
                                   progress=lambda stage, f: prog.update(task, completed=100 * f, description=stage))
    acc = rep["held_out"]["all"]
    print(f"{rep['folder']}: {prof.id} from {rep['per_op_rows']} per-op rows and {rep['fit_models']} whole models; "
          f"held-out on {acc.get('n', 0)} other models: MAPE {acc.get('mape', float('nan')):.1%}, "
          f"{acc.get('within_10', 0):.0%} within ±10% (rounds of one model apart: median "
          f"{(rep['round_spread'] or {}).get('median', float('nan')):.1%}); "
          f"oplat predict MODEL --profile {rep['folder']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="oplat", description="Operator-wise latency prediction for mobile ML models")
    from oplat import __version__

    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("predict", help="predict a model file's latency with a device profile")
    p.add_argument("model", nargs="*", help="a model file (.onnx, .tflite); several, a folder or a quoted glob "
                   "print one line per model")
    p.add_argument("--profile", required=True, help="profile id (e.g. pixel4/tflite-gpu) or folder")
    p.add_argument("--input-shape", action="append", metavar="NAME=1x3x224x224",
                   help="shape of a dynamic input (repeat per input)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--csv", action="store_true", help="print the per-op table as CSV")
    p.add_argument("--plot", help="write a per-op breakdown PNG")
    p.add_argument("--top", type=int, default=None, help="print only the first N rows of the per-op table (0: none)")
    p.add_argument("--force", action="store_true", help="replace an existing --plot PNG")
    p.add_argument("--strict", action="store_true",
                   help="refuse (exit 2) an incomplete prediction instead of giving a lower bound")
    p.add_argument("--space", help="a search space (oplat zoo spaces) whose architectures --archs lists")
    p.add_argument("--archs", metavar="FILE", help="one architecture string per line (- reads stdin)")
    p.add_argument("--json-lines", action="store_true",
                   help="print one JSON object per network, in input order (arch or model, total_ms, ...)")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes for --space (default 1; 0: every core)")
    p.set_defaults(fn=cmd_predict)

    for name, fn, hlp in (("train", cmd_train, "train device profiles from per-op and end-to-end CSVs"),
                          ("evaluate", cmd_evaluate, "grouped K-fold cross-validation on held-out models")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--ops-csv", help="per-op CSV (default: the shared phone benchmark)")
        p.add_argument("--e2e-csv", help="end-to-end CSV (default: the shared phone benchmark)")
        p.add_argument("--devices", help="comma-separated devices (default: all in the data)")
        p.add_argument("--graphs", default=str(DEFAULT_GRAPHS), help="folder of <model>.onnx graphs")
        p.add_argument("--e2e-term", default="auto",
                       help="end-to-end term fit: l2, huber, signed, a comma list, or auto (all three, "
                            "the least CV error over the fitting models chosen per device)")
        p.set_defaults(fn=fn)
        if name == "train":
            p.add_argument("--data", action="append", help="an 'oplat collect' dataset (repeatable); "
                                                            "replaces --ops-csv/--e2e-csv")
            p.add_argument("--exclude-models", help="comma-separated models left out of training")
            p.add_argument("-o", "--output", "--out", dest="out", required=True, help="output folder (DIR/<device>/tflite-gpu)")
            p.add_argument("--force", action="store_true", help="replace existing profiles (and nothing else)")
        else:
            p.add_argument("--folds", type=int, default=10)
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("-o", "--output", "--out", dest="out", help="write the metrics as JSON")
            p.add_argument("--plot", help="write a predicted-vs-measured PNG")
            p.add_argument("--force", action="store_true", help="replace an existing --out JSON or --plot PNG")

    p = sub.add_parser("profiles", help="list the device profiles with their accuracy")
    p.add_argument("--device", help="only this device's profiles (e.g. pixel4)")
    p.add_argument("--processor", choices=["cpu", "gpu"])
    p.add_argument("--framework", help="tflite, torch, onnxruntime, litert, opencl")
    p.add_argument("--match", metavar="GLOB", help="only ids matching this pattern (e.g. '*/tflite-cpu-1large*')")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(fn=cmd_profiles)

    p = sub.add_parser("compare", help="which phone, processor or framework runs these models fastest")
    p.add_argument("models", nargs="+", help="model files (ONNX or .tflite)")
    p.add_argument("--profiles", default="*/tflite-gpu", metavar="GLOB",
                   help="profile ids to compare (default: every phone GPU, '*/tflite-gpu')")
    p.add_argument("--input-shape", action="append", metavar="NAME=1x3x224x224", help="shape of a dynamic input")
    p.add_argument("--strict", action="store_true", help="refuse incomplete predictions instead of lower bounds")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", help="write a grouped bar chart PNG")
    p.add_argument("--force", action="store_true", help="replace an existing --plot PNG")
    p.set_defaults(fn=cmd_compare)

    p = sub.add_parser("collect", help="measure per-op latency on this machine into a dataset (resumable)")
    p.add_argument("--backend", required=True, help="ort-cpu, litert-cpu or opencl")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cores", help="comma-separated CPU ids to pin to")
    p.add_argument("--budget", help="stop after this long (90s, 10m, 1h)")
    p.add_argument("-o", "--output", "--out", dest="out", required=True,
                   help="dataset file (re-running the same command resumes it)")
    p.add_argument("--device", default="host", help="device name recorded in the rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-configs", type=int, default=20000)
    p.add_argument("--kernels", help="measure only these kernel types (comma-separated, e.g. SPLIT,SLICE)")
    p.add_argument("--graphs", default=str(DEFAULT_GRAPHS), help="models whose kernels to cover")
    p.add_argument("--adaptive", action="store_true",
                   help="measure batch by batch where the predictor errs most (see --strategy)")
    # oplat.collect.adaptive.STRATEGIES, spelled out: the parser imports nothing heavy
    p.add_argument("--strategy", choices=("error", "committee"), default="committee",
                   help="adaptive: near the configs predicted worst (error) or where bootstrap profiles disagree")
    p.add_argument("--batch", type=int, default=100, help="configs per adaptive batch")
    p.set_defaults(fn=cmd_collect)

    p = sub.add_parser("profile-device", help="profile this machine from nothing measured (per-op rows, whole "
                                              "models, end-to-end term, held-out accuracy), within a budget")
    p.add_argument("--backend", required=True, help="ort-cpu, litert-cpu or opencl")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cores", help="comma-separated CPU ids to pin to")
    p.add_argument("--budget", default="20m", help="all of it, collection and whole models (90s, 20m, 1h)")
    p.add_argument("-o", "--output", "--out", dest="out", required=True,
                   help="folder for the profile (DIR/host/<backend>-<t>t) and its measurements (running again resumes)")
    p.set_defaults(fn=cmd_profile_device)

    p = sub.add_parser("convert", help="convert an ONNX model to .tflite (NHWC, fused as the TFLite converter does)")
    p.add_argument("model")
    p.add_argument("-o", "--output", "--out", dest="out", required=True, help="output .tflite file")
    p.add_argument("--input-shape", action="append", metavar="NAME=1x3x224x224", help="shape of a dynamic input")
    p.add_argument("--nchw-inputs", action="store_true", help="keep 4-D inputs NCHW (a TRANSPOSE follows them)")
    p.add_argument("--force", action="store_true", help="replace an existing .tflite file")
    p.set_defaults(fn=cmd_convert)

    cal = sub.add_parser("calibrate", help="adapt a profile to a new phone from a few end-to-end measurements")
    cal.add_argument("--base", required=True, help="profile id or folder, or 'auto' to pick the best one")
    cal.add_argument("--measurements", required=True, help="CSV with columns model,latency_ms")
    cal.add_argument("-o", "--output", "--out", dest="out", required=True, help="folder of the new profile")
    cal.add_argument("--method", default="auto",
                     choices=["auto", "scale", "scale+fixed", "per-key", "per-key-smooth", "blend"],
                     help="auto: blend with the compatible shipped profiles when there are any, else the "
                          "per-base method with the lowest leave-one-out error")
    cal.add_argument("--exclude-devices", metavar="A,B", help="devices whose profiles may not join a blend "
                     "(to check transfer to a phone that has shipped profiles)")
    cal.add_argument("--force", action="store_true", help="replace an existing profile (and nothing else)")
    cal.set_defaults(fn=cmd_calibrate)
    sg = sub.add_parser("suggest", help="which models to measure on a new phone for 'oplat calibrate'")
    sg.add_argument("--base", required=True, help="the profile id or folder you will calibrate")
    sg.add_argument("-k", type=int, default=10, help="how many models (default 10)")
    sg.add_argument("--models", default=str(DEFAULT_GRAPHS), help="folder of candidate .onnx models")
    sg.add_argument("--max-ms", type=float, help="only models the base profile predicts faster than this")
    sg.add_argument("--csv", help="also write a model,latency_ms template to fill in")
    sg.add_argument("--exclude-devices", metavar="A,B", help="devices whose profiles may not guide the choice")
    sg.add_argument("--force", action="store_true", help="merge into an existing --csv, keeping its latencies")
    sg.add_argument("--space", help="choose networks of a search space (oplat zoo spaces) instead of --models")
    sg.add_argument("--candidates", type=int, default=1000, help="with --space: how many to sample and choose from")
    sg.add_argument("--seed", type=int, default=0, help="with --space: the sampling seed")
    sg.set_defaults(fn=cmd_suggest)
    p = sub.add_parser("zoo", help="list or build ONNX models of the zoo")
    zsub = p.add_subparsers(dest="zoo_cmd", required=True)
    zsub.add_parser("list", help="print one model name per line").set_defaults(fn=cmd_zoo)
    zsub.add_parser("spaces", help="print the search spaces (for <space>:<arch> names and predict --space)").set_defaults(fn=cmd_zoo)
    zb = zsub.add_parser("build", help="write one zoo model as ONNX")
    zb.add_argument("name", help="a name from 'oplat zoo list', or <space>:<architecture string> "
                    "of a search space from 'oplat zoo spaces' (nb201:|nor_conv_3x3~0|+...)")
    zb.add_argument("-o", "--output", required=True)
    zb.add_argument("--graph-only", action="store_true", help="dims only, no weights (small files)")
    zb.add_argument("--force", action="store_true", help="replace an existing ONNX file")
    zb.set_defaults(fn=cmd_zoo)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``oplat`` console script."""
    from oplat.errors import run_cli

    return run_cli("oplat", build_parser(), argv)

if __name__ == "__main__":
    sys.exit(main())
