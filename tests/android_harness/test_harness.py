"""android_harness against the fake adb server (adbutils and the real adb client)."""

import json
import os
import shutil
import subprocess
import time
import sys

import pytest

from android_harness.adb import Device, DeviceError, HarnessError, list_devices, safe_join
from android_harness.bench import BenchmarkCrash, run_benchmark_model
from android_harness.cli import main as harness_main
from android_harness.collect import collect_phone
from oplat.collect.run import read_collected
from oplat.store import DatasetStore
from oplat.tflite_writer import conv_classifier_tflite

from android_harness.testing import FakeAdbServer, install_fake_benchmark, make_phone


@pytest.fixture()
def phone(tmp_path, monkeypatch):
    ph = make_phone(tmp_path / "phone")
    with FakeAdbServer([ph]) as srv:
        monkeypatch.setenv("ANDROID_ADB_SERVER_HOST", "127.0.0.1")
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(srv.port))
        yield ph, srv


@pytest.fixture()
def binary(tmp_path):
    return install_fake_benchmark(tmp_path / "benchmark_model")


@pytest.fixture()
def model(tmp_path):
    p = tmp_path / "tiny.tflite"
    p.write_bytes(conv_classifier_tflite())
    return p


def test_devices_and_info_contract(phone, capsys):
    ph, _ = phone
    assert harness_main(["devices", "--json"]) == 0
    devs = json.loads(capsys.readouterr().out)
    assert devs == [{"serial": ph.serial, "state": "device", "model": "Pixel 4", "product": "flame", "device": "flame"}]
    assert harness_main(["info", "--serial", ph.serial, "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["model"] == "Pixel 4" and facts["soc"] == "SM8150"
    clusters = {c["name"]: c for c in facts["cpu_clusters"]}
    assert clusters["large"]["cpus"] == [7] and clusters["large"]["max_freq_khz"] == 2841600
    assert clusters["small"]["mask"] == "f" and clusters["med"]["cpus"] == [4, 5, 6]
    assert facts["gpu"]["model"] == "Adreno640v2"
    assert facts["thermal"]["zones_c"]["cpu-0-0-usr"] == 38.5 and facts["thermal"]["status"] == 0
    assert facts["battery"]["level"] == 87 and facts["airplane_mode"] is False


def test_unreadable_paths_are_recorded_not_raised(phone):
    ph, _ = phone
    shutil.rmtree(ph.root / "sys" / "class" / "kgsl")
    (ph.root / "sys" / "class" / "power_supply" / "battery" / "temp").unlink()
    from android_harness.facts import device_facts

    facts = device_facts(Device(ph.serial))
    assert facts["gpu"]["model"] == "unreadable"
    assert facts["battery"]["temp_c"] == "unreadable"


def test_bench_runs_the_model_for_real_with_op_profiling(phone, binary, model, capsys):
    ph, _ = phone
    assert harness_main(["bench", str(model), "--serial", ph.serial, "--benchmark-binary", str(binary),
                         "--cores", "1large", "--op-profiling", "--runs", "20", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["avg_ms"] > 0 and res["runs"]["count"] == 20
    assert res["ops"] and all({"type", "avg_ms"} <= set(o) for o in res["ops"])
    assert res["command"][:2] == ["taskset", "80"]
    assert "--min_secs=0" in res["command"] and "--warmup_min_secs=0" in res["command"]
    assert res["thermal"]["reached_baseline"] is True
    # the phone is a "Pixel 4": the shipped pixel4/tflite-cpu-1large profile predicts the same model
    assert res["profile"] == "pixel4/tflite-cpu-1large" and res["predicted_ms"] > 0
    # the binary is pushed once: a second run finds it by checksum
    pushes = sum(1 for r in ph.commands if r.startswith("sha256sum") and "benchmark_model" in r)
    run_benchmark_model(Device(ph.serial), model, binary, runs=5)
    assert sum(1 for r in ph.commands if r.startswith("sha256sum") and "benchmark_model" in r) == pushes + 1


def test_benchmark_binary_crash_keeps_partial_output(phone, model, tmp_path):
    ph, _ = phone
    crash = tmp_path / "benchmark_model"
    crash.write_text(f"#!{sys.executable}\nimport os, sys\nprint('INFO: STARTING!')\nprint('INFO: Loaded model x')\n"
                     "sys.stdout.flush()\nos.abort()\n")
    crash.chmod(0o755)
    with pytest.raises(BenchmarkCrash) as e:
        run_benchmark_model(Device(ph.serial), model, crash, runs=5)
    assert "exited" in str(e.value) and "Loaded model" in e.value.output
    assert harness_main(["bench", str(model), "--serial", ph.serial, "--benchmark-binary", str(crash)]) == 2


def test_unauthorized_and_missing_devices_fail_with_one_line(phone, capsys):
    ph, _ = phone
    ph.state = "unauthorized"
    assert harness_main(["info", "--serial", ph.serial]) == 2
    err = capsys.readouterr().err.strip()
    assert "unauthorized" in err and len(err.splitlines()) == 1
    assert list_devices()[0]["state"] == "unauthorized"
    assert harness_main(["info", "--serial", "NOPE123"]) == 2
    assert "not found" in capsys.readouterr().err


def test_shell_metacharacters_never_reach_the_shell(phone, tmp_path):
    ph, _ = phone
    dev = Device(ph.serial)
    evil = "x; touch pwned; $(touch pwned2) `touch pwned3` && touch pwned4 | touch pwned5"
    r = dev.shell(["echo", evil])
    assert r.stdout.strip() == evil
    assert not any((ph.root / n).exists() for n in ("pwned", "pwned2", "pwned3", "pwned4", "pwned5"))
    with pytest.raises(DeviceError):
        Device("FAKE0001; touch /tmp/pwned").shell(["true"])
    weird = tmp_path / "m;touch $(pwned).tflite"
    weird.write_bytes(conv_classifier_tflite())
    from android_harness.bench import ensure_file

    remote = ensure_file(dev, weird)
    assert ";" not in remote and "$" not in remote and " " not in remote
    assert not (ph.root / "data" / "local" / "tmp" / "pwned").exists()


def test_pull_never_escapes_the_output_folder(phone, tmp_path):
    ph, _ = phone
    dev = Device(ph.serial)
    (ph.root / "data" / "local" / "tmp" / "r.txt").write_text("ok")
    out = tmp_path / "out"
    assert dev.pull("/data/local/tmp/r.txt", out).read_text() == "ok"
    for bad in ("../evil.txt", "/etc/evil", "..", "a/../../evil"):
        with pytest.raises(HarnessError):
            dev.pull("/data/local/tmp/r.txt", out, name=bad)
    with pytest.raises(HarnessError):
        safe_join(out, "../../x")
    assert not (tmp_path / "evil.txt").exists()


def test_push_is_checked_by_size_and_sha256(phone, tmp_path):
    ph, _ = phone
    f = tmp_path / "blob.bin"
    f.write_bytes(os.urandom(300_000))
    dev = Device(ph.serial)
    digest = dev.push(f, "/data/local/tmp/blob.bin")
    assert (ph.root / "data" / "local" / "tmp" / "blob.bin").read_bytes() == f.read_bytes()
    assert dev.sha256("/data/local/tmp/blob.bin") == digest


@pytest.mark.skipif(shutil.which("adb") is None, reason="Debian adb client not installed")
def test_real_adb_client_talks_to_the_fake_server(phone, tmp_path):
    ph, srv = phone
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(srv.port))

    def adb(*args):
        return subprocess.run(["adb", "-P", str(srv.port), *args], env=env, capture_output=True, text=True,
                              timeout=60)

    r = adb("devices", "-l")
    assert r.returncode == 0 and ph.serial in r.stdout and "model:Pixel_4" in r.stdout
    f = tmp_path / "p.bin"
    f.write_bytes(os.urandom(100_000))
    assert adb("-s", ph.serial, "push", str(f), "/data/local/tmp/p.bin").returncode == 0
    assert (ph.root / "data" / "local" / "tmp" / "p.bin").read_bytes() == f.read_bytes()
    r = adb("-s", ph.serial, "shell", "getprop", "ro.product.model")
    assert r.returncode == 0 and r.stdout.strip() == "Pixel 4"
    assert adb("-s", ph.serial, "shell", "exit 7").returncode == 7
    back = tmp_path / "back.bin"
    assert adb("-s", ph.serial, "pull", "/data/local/tmp/p.bin", str(back)).returncode == 0
    assert back.read_bytes() == f.read_bytes()


def test_collect_survives_disconnects_without_losing_or_duplicating_rows(phone, binary, tmp_path):
    ph, _ = phone
    configs = [{"kernel": "CONV_2D", "Input_shape": h, "Input_channel": c, "Filter": c, "Kernel": 3, "Stride": 1,
                "Group": 1, "linked": ["relu"]} for h in (8, 12, 16) for c in (8, 16, 24)]
    configs += [{"kernel": "DEPTHWISE_CONV_2D", "Input_shape": h, "Input_channel": 16, "Filter": 1, "Kernel": 3,
                 "Stride": s, "Group": 1, "linked": []} for h in (8, 16) for s in (1, 2)]
    configs += [{"kernel": "CONV_2D", "Input_shape": 8, "Input_channel": 8, "Filter": 8, "Kernel": 3, "Stride": 1,
                 "Group": 2, "linked": []}]  # grouped conv: no single TFLite op, recorded as failed
    out = tmp_path / "phone.csv"
    # three disconnects mid-collection, each longer than the one quick retry: collection must resume
    ph.drop_at, ph.gone_for = [30, 50, 70], 2.5
    totals = collect_phone(ph.serial, binary, configs, out, runs=5, warmup=1, thermal=False,
                           reconnect_timeout_s=20)
    assert totals["reconnects"] == 3 and not ph.drop_at
    store = DatasetStore(out)
    ids = [r["config_id"] for r in store.rows()]
    assert len(ids) == len(set(ids)) == len(configs)
    statuses = {r["config_id"]: r["status"] for r in store.rows()}
    assert list(statuses.values()).count("failed") == 1
    rows = read_collected(out)
    assert len(rows) == len(configs) - 1 and all(r.latency_ms > 0 for r in rows)
    assert {r.impl for r in rows} >= {"igemm", "depthwise_s2"}  # CPU lowering's kernel families


def test_collect_on_two_phones_at_once(tmp_path, monkeypatch, binary, capsys):
    phones = [make_phone(tmp_path / f"p{i}", serial=f"FAKE000{i}") for i in (1, 2)]
    with FakeAdbServer(phones) as srv:
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(srv.port))
        out = tmp_path / "multi.csv"
        assert harness_main(["collect", "--serial", "FAKE0001,FAKE0002", "--benchmark-binary", str(binary),
                             "--configs", "6", "--runs", "3", "--no-thermal", "--zoo-models", "resnet18",
                             "--out", str(out)]) == 0
    for s in ("FAKE0001", "FAKE0002"):
        store = DatasetStore(tmp_path / f"multi.{s}.csv")
        assert len(store.rows()) == 6
        assert store.meta["phone"]["serial"] == s
    assert all(any("benchmark_model" in c for c in p.commands) for p in phones)


def test_onnxruntime_perf_test_runner(phone, tmp_path):
    ph, _ = phone
    from android_harness.bench import run_ort_perf_test
    from android_harness.testing.fake_adb import HERE

    tool = tmp_path / "onnxruntime_perf_test"
    tool.write_text((HERE / "fake_ort_perf_test.py").read_text().replace("#!/usr/bin/env python3",
                                                                          f"#!{sys.executable}", 1))
    tool.chmod(0o755)
    import onnx

    import oplat.zoo as zoo

    model = tmp_path / "mnv2.onnx"
    onnx.save(zoo.build("mobilenet_v2_0.35"), model)
    res = run_ort_perf_test(Device(ph.serial), model, tool, threads=1, cores="large", runs=5)
    assert res["avg_ms"] > 0 and res["runs"] == 5 and res["mask"] == "80"
    assert set(res["percentiles_ms"]) >= {"p50", "p90"}


def test_measure_fills_a_suggest_template_resumably_and_for_one_phone_only(phone, binary, tmp_path, capsys):
    import numpy as np
    import onnx

    from android_harness.measure import measure_csv
    from oplat.spaces.nb201 import nb201_model, random_arch
    from oplat.calibrate import read_measurements, write_template
    from oplat.cli import main as oplat_main

    ph, _ = phone
    rng = np.random.default_rng(0)
    (tmp_path / "m").mkdir()
    paths = []
    for i in range(3):
        paths.append(tmp_path / "m" / f"nb{i}.onnx")
        onnx.save(nb201_model(random_arch(rng), n=1), paths[-1])
    csv_path, _ = write_template(paths, tmp_path / "phone.csv")
    assert csv_path.read_text().splitlines()[1] == "m/nb0.onnx,"  # relative to the CSV's folder

    def unplug_after_first(model, ms):
        ph.gone_until = time.time() + 60  # the phone is gone before the second model

    with pytest.raises(DeviceError):
        measure_csv(Device(ph.serial), csv_path, binary, runs=3, warmup=1, thermal_wait_s=0,
                    on_model=unplug_after_first)
    rows = csv_path.read_text().splitlines()
    assert float(rows[1].split(",")[1]) > 0 and rows[2:] == ["m/nb1.onnx,", "m/nb2.onnx,"]  # kept, atomically
    ph.gone_until = 0.0
    args = ["measure", str(csv_path), "--serial", ph.serial, "--benchmark-binary", str(binary), "--runs", "3",
            "--warmup", "1", "--thermal-wait", "0"]
    assert harness_main(args) == 0
    assert "2 measured now, 1 already, 3 rows" in capsys.readouterr().out
    assert [m.model for m in read_measurements(csv_path)] == paths and rows[1] in csv_path.read_text()
    # another core set on the same CSV would mix two settings in one calibration: refused
    assert harness_main(args + ["--threads", "2"]) == 2
    assert "measured with threads=1" in capsys.readouterr().err
    assert oplat_main(["calibrate", "--base", "pixel4/tflite-cpu-1large", "--measurements", str(csv_path),
                       "--out", str(tmp_path / "myphone")]) == 0
    assert "warning" not in capsys.readouterr().err
    # a base of another thread count is named as a mismatch (still calibrated: the user may mean it)
    assert oplat_main(["calibrate", "--base", "pixel4/tflite-cpu-2small", "--measurements", str(csv_path),
                       "--out", str(tmp_path / "myphone2")]) == 0
    assert "measured with 1 thread(s); pixel4/tflite-cpu-2small models 2" in capsys.readouterr().err


def test_profile_a_phone_from_nothing_measured_and_resume(phone, binary, tmp_path, capsys):
    """android-harness profile on the emulated phone: per-op rows, whole models, the
    end-to-end term, held-out accuracy in the metadata; run again, it measures nothing twice."""
    args = ["profile", "--benchmark-binary", str(binary), "--core-set", "1large", "--configs", "10",
            "--fit-models", "6", "--test-models", "3", "--runs", "3", "--no-thermal", "-o", str(tmp_path / "out")]
    assert harness_main(args) == 0
    out = capsys.readouterr().out
    folder = next((tmp_path / "out").glob("*/tflite-cpu-1large"))
    meta = json.loads((folder / "profile.json").read_text())
    assert meta["accuracy"]["end_to_end"]["n"] == 3 and meta["overhead"]["coef"] is not None
    assert "held-out on 3 other models" in out
    work = next((tmp_path / "out" / ".android-harness-profile").iterdir())
    before = {f.name: f.read_text() for f in work.glob("*.csv")}
    assert harness_main(args) == 0
    assert {f.name: f.read_text() for f in work.glob("*.csv")} == before  # resumed: nothing measured again
