#!/usr/bin/env python3
"""Emulated ``onnxruntime_perf_test`` for the fake phone: runs the model with onnxruntime on
this machine (``-m times -r N -x T -I model``) and prints the real tool's summary format."""

import sys
import time


def main():
    args = sys.argv[1:]
    runs, threads, model = 100, 1, args[-1]
    for i, a in enumerate(args):
        if a == "-r":
            runs = int(args[i + 1])
        if a == "-x":
            threads = int(args[i + 1])
    import numpy as np
    import onnxruntime as ort

    t0 = time.perf_counter()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    created = time.perf_counter() - t0
    feeds = {i.name: np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in i.shape])
             .astype(np.float32) for i in sess.get_inputs()}
    t = time.perf_counter()
    sess.run(None, feeds)
    first = (time.perf_counter() - t) * 1000
    times = []
    start = time.perf_counter()
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    s = sorted(times)
    print(f"Setting intra_op_num_threads to {threads}")
    print(f"Session creation time cost: {created:g} s")
    print(f"First inference time cost: {first:.0f} ms")
    print(f"Total inference time cost: {sum(times):g} s")
    print(f"Total inference requests: {runs}")
    print(f"Average inference time cost: {sum(times) / runs * 1000:g} ms")
    print(f"Total inference run time: {total:g} s")
    print(f"Number of inferences per second: {runs / total:g} ")
    print("Avg CPU usage: 50 %")
    print("Peak working set size: 36696064 bytes")
    print(f"Min Latency: {s[0]:g} s")
    print(f"Max Latency: {s[-1]:g} s")
    for p in (50, 90, 95, 99):
        print(f"P{p} Latency: {s[min(len(s) - 1, int(len(s) * p / 100))]:g} s")
    print(f"P999 Latency: {s[-1]:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
