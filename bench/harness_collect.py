"""Collect a new phone's profile through the harness, on the emulated phone.

Starts the fake adb server (android_harness/testing/fake_adb.py: the adb host protocol, a sandboxed
phone whose ``benchmark_model`` runs the pushed .tflite with LiteRT on this machine),
collects N op configs with ``android-harness collect``'s pipeline while the transport
is dropped 3 times, checks that no row is lost or duplicated, trains with
``oplat train --data``, and reports per-op accuracy on held-out configs (trained on
80% of the configs, tested on the other 20%).

    python -m bench.harness_collect [--configs 200]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402

from android_harness.collect import phone_configs  # noqa: E402
from android_harness.testing import FakeAdbServer, install_fake_benchmark, make_phone  # noqa: E402
from oplat.collect.run import read_collected  # noqa: E402
from oplat.fitting import error_metrics, group_folds  # noqa: E402
from oplat.store import DatasetStore  # noqa: E402
from oplat.train import ProfileTrainer  # noqa: E402
from oplat.zoo import zoo_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "harness_collect.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="harness-bench-"))
    phone = make_phone(tmp / "phone")
    binary = install_fake_benchmark(tmp / "benchmark_model")
    from oplat.train import load_graphs

    graphs = load_graphs(zoo_dir("cnn_zoo"), ["mobilenetv2_w1", "resnet18", "mobilenetv3_large_w1",
                                                       "squeezenet_v1_1", "regnetx004", "mnasnet_b1"])
    configs = phone_configs(graphs.values(), args.configs, seed=0)
    dataset = tmp / "phone.csv"
    with FakeAdbServer([phone]) as srv:
        os.environ["ANDROID_ADB_SERVER_PORT"] = str(srv.port)
        from android_harness.collect import collect_phone

        n_cmds = 6 * len(configs)
        phone.drop_at = [n_cmds // 4, n_cmds // 2, 3 * n_cmds // 4]
        phone.gone_for = 2.5
        t0 = time.time()
        totals = collect_phone(phone.serial, binary, configs, dataset, cores="1large", runs=10, warmup=2,
                               thermal=False, reconnect_timeout_s=30)
        seconds = time.time() - t0
    rows_all = DatasetStore(dataset).rows()
    ids = [r["config_id"] for r in rows_all]
    rows = read_collected(dataset)
    folds = group_folds([r.extra["config_id"] for r in rows], 5, seed=0)
    test_ids = set(folds[0])
    train = [r for r in rows if r.extra["config_id"] not in test_ids]
    test = [r for r in rows if r.extra["config_id"] in test_ids]
    device = rows[0].device  # the phone's model name, as recorded by the harness
    prof = ProfileTrainer("tflite", "cpu", lowering="tflite-cpu", variant="cpu",
                          profile_id="pixel4-emulated/tflite-cpu-1large").fit(train, {}, {}, device)
    pred = prof.predict_kernels([(r.kernel, r.impl, r.params, r.linked) for r in test])
    ok = ~np.isnan(pred)
    metrics = error_metrics(pred[ok], np.array([r.latency_ms for r in test])[ok])
    result = {"configs": len(configs), "rows": len(rows_all), "unique_rows": len(set(ids)),
              "lost": len(configs) - len(set(ids)), "duplicated": len(ids) - len(set(ids)),
              "failed_configs": sum(r["status"] != "ok" for r in rows_all), "disconnects_forced": 3,
              "reconnects": totals["reconnects"], "collect_seconds": round(seconds, 1),
              "held_out_per_op": metrics, "held_out_predicted": int(ok.sum()), "held_out_total": len(test),
              "note": "emulated phone: LiteRT/XNNPACK on this machine's CPU, pinned mask recorded only"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
