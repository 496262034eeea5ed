#!/usr/bin/env python3
"""Emulated TFLite ``benchmark_model`` for the fake phone: runs the .tflite for real with
LiteRT on this machine and prints the real tool's output format (TF 2.13+ / LiteRT style,
``INFO: `` prefixed, op-profiling tables without the ``[start]`` column).

Per-op rows: LiteRT's Python API has no op profiler, so the measured run time is
attributed to the model's ops in proportion to their output sizes (exact for the
single-op models that per-op collection uses). ``FAKE_BENCH_CRASH=1`` in the environment
makes it print partial output and die like a crashing binary.
"""

import os
import statistics
import sys
import time


def flag(name, default=None):
    for a in sys.argv[1:]:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return default


def main():
    graph = flag("graph")
    runs = int(flag("num_runs", "50"))
    warm = int(flag("warmup_runs", "1"))
    threads = int(flag("num_threads", "-1"))
    profiling = flag("enable_op_profiling", "false") in ("true", "1")
    use_gpu = flag("use_gpu", "false") in ("true", "1")
    xnn = flag("use_xnnpack", "true") in ("true", "1")
    print("INFO: STARTING!")
    print("INFO: Log parameter values verbosely: [0]")
    print(f"INFO: Min num runs: [{runs}]")
    print(f"INFO: Num threads: [{threads}]")
    print(f"INFO: Min warmup runs: [{warm}]")
    print(f"INFO: Graph: [{graph}]")
    if profiling:
        print("INFO: Enable op profiling: [1]")
    print(f"INFO: #threads used for CPU inference: [{threads}]")
    if use_gpu:
        print("INFO: Use gpu: [1]")
    sys.stdout.flush()
    if not graph or not os.path.isfile(graph):
        print(f"ERROR: File {graph} does not exist")
        print("ERROR: Benchmarking failed.")
        return 1
    if os.environ.get("FAKE_BENCH_CRASH"):
        print(f"INFO: Loaded model {graph}")
        sys.stdout.flush()
        os.abort()
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    t0 = time.perf_counter()
    kw = {"num_threads": threads if threads > 0 else None}
    if not xnn:
        kw["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_path=graph, **kw)
    it.allocate_tensors()
    init_us = (time.perf_counter() - t0) * 1e6
    print(f"INFO: Loaded model {graph}")
    print(f"INFO: The input model file size (MB): {os.path.getsize(graph) / 1e6:g}")
    print(f"INFO: Initialized session in {init_us / 1000:.3f}ms.")
    if use_gpu:
        print("INFO: Created TensorFlow Lite delegate for GPU.")
        print("INFO: GPU delegate created.")
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.random.default_rng(0).standard_normal(d["shape"]).astype(d["dtype"]))

    def timed(n):
        out = []
        for _ in range(n):
            s = time.perf_counter()
            it.invoke()
            out.append((time.perf_counter() - s) * 1e6)
        return out

    def line(ts):
        avg = statistics.mean(ts)
        std = statistics.pstdev(ts) if len(ts) > 1 else 0.0
        return (f"count={len(ts)} first={ts[0]:.0f} curr={ts[-1]:.0f} min={min(ts):.0f} max={max(ts):.0f} "
                f"avg={avg:g} std={std:.0f}")

    print(f"INFO: Running benchmark for at least {warm} iterations and at least 0 seconds but terminate if "
          f"exceeding 150 seconds.")
    w = timed(max(warm, 1))
    print("INFO: " + line(w) + "\n")
    print(f"INFO: Running benchmark for at least {runs} iterations and at least 0 seconds but terminate if "
          f"exceeding 150 seconds.")
    r = timed(runs)
    print("INFO: " + line(r) + "\n")
    print(f"INFO: Inference timings in us: Init: {init_us:.0f}, First inference: {w[0]:.0f}, "
          f"Warmup (avg): {statistics.mean(w):g}, Inference (avg): {statistics.mean(r):g}")
    print("INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE "
          "to the actual memory footprint of the model at runtime. Take the information at your discretion.")
    print("INFO: Memory footprint delta from the start of the tool (MB): init=3.23047 overall=9.875")
    print("INFO: Overall peak memory footprint (MB) via periodic monitoring: 14.2695")
    if profiling:
        ops = it._get_ops_details()
        sizes = []
        for op in ops:
            n = 0
            for t in op["outputs"]:
                n += int(np.prod(it.get_tensor_details()[t]["shape"])) if t >= 0 else 0
            sizes.append(max(n, 1))
        avg_ms = statistics.mean(r) / 1000
        first_ms = r[0] / 1000
        total = sum(sizes)
        rows = [(op["op_name"], first_ms * s / total, avg_ms * s / total, f"[{op['op_name'].lower()}]:{op['index']}")
                for op, s in zip(ops, sizes)]
        rows = [r for r in rows if r[0] != "DELEGATE"]
        if use_gpu:
            rows = [("TfLiteGpuDelegateV2", first_ms, avg_ms, "[output]:" + str(len(ops) - 1))]
        elif xnn:
            rows = [("TfLiteXNNPackDelegate", first_ms, avg_ms, f"[y]:{len(ops) - 1}")]
        header = "\t             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]"
        print("INFO: Profiling Info for Benchmark Initialization:")
        print("============================== Run Order ==============================")
        print(header)
        print(f"\t         ModifyGraphWithDelegate\t{init_us / 1000:9.3f}\t{init_us / 1000:9.3f}\t100.000%\t100.000%\t"
              f"     0.000\t        1\tModifyGraphWithDelegate/0")
        print()
        print("INFO: Operator-wise Profiling Info for Regular Benchmark Runs:")
        print("============================== Run Order ==============================")
        print(header)
        cdf = 0.0
        tot = sum(a for _, _, a, _ in rows) or 1.0
        for typ, first, avg, name in rows:
            pct = 100 * avg / tot
            cdf += pct
            print(f"\t{typ:>24}\t{first:9.3f}\t{avg:9.3f}\t{pct:7.3f}%\t{cdf:7.3f}%\t     0.000\t        1\t{name}")
        print()
        print("Number of nodes executed: %d" % len(rows))
        print("============================== Summary by node type ==============================")
    return 0


if __name__ == "__main__":
    sys.exit(main())
