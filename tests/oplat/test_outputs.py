"""Nothing of the user's is lost or clobbered: the output policy of every command that
writes (oplat.outputs), conservative dataset repair (oplat.store), inputs that are not
regular files. Each scenario of the issue that asked for it, as a user would meet it."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from oplat.cli import main
from oplat.outputs import (OutputError, atomic_write_text, check_output_file, check_output_folder, regular_input,
                           replace_folder)
from oplat.profile import load_profile
from oplat.store import DatasetStore
from oplat.zoo import zoo_dir

ZOO = zoo_dir("cnn_zoo")
MODELS = ["resnet10", "resnet18_wd2", "mobilenet_wd2", "mobilenetv2_wd2", "squeezenet_v1_1", "regnetx002"]
BASE = "pixel4/tflite-cpu-1large"


def _measurements(folder: Path, filled: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "m.csv"
    p.write_text("model,latency_ms\n" + "".join(f"{ZOO / m}.onnx,{10 + i if filled else ''}\n"
                                                 for i, m in enumerate(MODELS)))
    return p


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _calibrate(csv: Path, out, *extra: str) -> int:
    return main(["calibrate", "--base", BASE, "--measurements", str(csv), "--out", str(out), *extra])


# --- calibrate: --force never deletes what is not a profile -------------------------------------
def test_calibrate_force_refuses_a_folder_of_notes(tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    (notes / "other.ubj").write_bytes(b"not mine")
    before = _snapshot(notes)
    csv = _measurements(tmp_path / "data")
    for extra in ((), ("--force",)):
        assert _calibrate(csv, notes, *extra) == 2
        err = capsys.readouterr().err
        assert "folder of other files" in err and err.count("\n") == 1
        assert _snapshot(notes) == before


def test_calibrate_force_refuses_the_folder_holding_its_inputs_and_the_working_directory(tmp_path, capsys,
                                                                                          monkeypatch):
    data = tmp_path / "data"
    csv = _measurements(data)
    before = _snapshot(data)
    assert _calibrate(csv, data, "--force") == 2
    assert "input" in capsys.readouterr().err
    monkeypatch.chdir(data)
    assert _calibrate(csv, ".", "--force") == 2
    assert "working directory" in capsys.readouterr().err
    assert _calibrate(csv, "..", "--force") == 2
    assert _snapshot(data) == before and sorted(os.listdir(tmp_path)) == ["data"]


def test_calibrate_out_naming_a_file_is_one_line(tmp_path, capsys):
    csv = _measurements(tmp_path / "data")
    f = tmp_path / "afile"
    f.write_text("x")
    assert _calibrate(csv, f, "--force") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a folder" in err and f.read_text() == "x"


def test_calibrate_replaces_only_a_profile_and_keeps_its_other_files(tmp_path, capsys):
    csv = _measurements(tmp_path / "data")
    out = tmp_path / "phone" / "cpu"
    assert _calibrate(csv, out) == 0
    (out / "notes.txt").write_text("mine")
    assert _calibrate(csv, out) == 2 and "--force" in capsys.readouterr().err
    assert _calibrate(csv, out, "--force") == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert load_profile(out).meta["calibration"]
    assert [p.name for p in out.parent.iterdir()] == ["cpu"]  # no temporary folder left behind


# --- train ---------------------------------------------------------------------------------------
def test_train_from_a_dataset_refuses_to_replace_a_profile_without_force(tmp_path, capsys):
    data = _dataset(tmp_path / "host.csv", 40)
    out = tmp_path / "prof"
    assert main(["train", "--data", str(data), "--out", str(out)]) == 0
    folder = next(p.parent for p in out.rglob("profile.json"))
    (folder / "unrelated.ubj").write_bytes(b"mine")
    before = _snapshot(folder)
    capsys.readouterr()
    assert main(["train", "--data", str(data), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and _snapshot(folder) == before
    assert main(["train", "--data", str(data), "--out", str(out), "--force"]) == 0
    assert (folder / "unrelated.ubj").read_bytes() == b"mine"


# --- suggest never empties a filled CSV -----------------------------------------------------------
def test_suggest_keeps_measured_latencies(tmp_path, capsys):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    for m in MODELS:
        (zoo / f"{m}.onnx").symlink_to(ZOO / f"{m}.onnx")
    csv = tmp_path / "m.csv"
    csv.write_text("model,latency_ms\n" + "".join(f"zoo/{m}.onnx,{i + 1}.5\n" for i, m in enumerate(MODELS)))
    before = csv.read_text()
    args = ["suggest", "--base", BASE, "-k", "3", "--models", str(zoo), "--csv", str(csv)]
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err and csv.read_text() == before
    assert main(args + ["--force"]) == 0
    assert "kept the 6 latencies" in capsys.readouterr().err
    lines = csv.read_text().splitlines()
    assert lines[0] == "model,latency_ms" and len(lines) == 7
    assert sorted(lines[1:]) == sorted(before.splitlines()[1:])  # every measured row, with its latency


# --- convert, zoo build, predict --plot ------------------------------------------------------------
def test_convert_to_a_folder_is_refused_and_leaves_nothing(tmp_path, capsys):
    folder = tmp_path / "SOMEDIR"
    folder.mkdir()
    model = ZOO / "mobilenet_wd4.onnx"
    assert main(["convert", str(model), "-o", str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["SOMEDIR"] and not list(folder.iterdir())


def test_convert_replaces_only_a_tflite_and_never_its_input(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes((ZOO / "mobilenet_wd4.onnx").read_bytes())
    out = tmp_path / "m.tflite"
    assert main(["convert", str(model), "-o", str(out)]) == 0
    assert main(["convert", str(model), "-o", str(out)]) == 2 and "--force" in capsys.readouterr().err
    assert main(["convert", str(model), "-o", str(out), "--force"]) == 0
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["convert", str(model), "-o", str(notes), "--force"]) == 2
    assert "not a TFLite model" in capsys.readouterr().err and notes.read_text() == "mine"
    before = model.read_bytes()
    assert main(["convert", str(model), "-o", str(model), "--force"]) == 2
    assert "input" in capsys.readouterr().err and model.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_zoo_build_replaces_only_an_onnx_file(tmp_path, capsys):
    out = tmp_path / "r.onnx"
    assert main(["zoo", "build", "resnet10", "--graph-only", "-o", str(out)]) == 0
    assert main(["zoo", "build", "resnet10", "--graph-only", "-o", str(out)]) == 2
    assert main(["zoo", "build", "resnet10", "--graph-only", "-o", str(out), "--force"]) == 0
    txt = tmp_path / "r.txt"
    txt.write_text("mine")
    assert main(["zoo", "build", "resnet10", "--graph-only", "-o", str(txt), "--force"]) == 2
    assert txt.read_text() == "mine"


# --- inputs that are not regular files ---------------------------------------------------------------
def test_measurements_from_a_fifo_or_device_are_refused_at_once(tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for src, word in ((fifo, "FIFO"), (Path("/dev/zero"), "device"), (tmp_path, "folder")):
        t0 = time.monotonic()
        assert _calibrate(src, tmp_path / "out") == 2
        err = capsys.readouterr().err
        assert word in err and err.count("\n") == 1 and time.monotonic() - t0 < 2.0


def test_regular_input_bounds_size_without_reading(tmp_path):
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:
        f.truncate(10 << 20)  # sparse: 10 MB that cost nothing
    with pytest.raises(OutputError, match="more than"):
        regular_input(big, "measurements", max_bytes=1 << 20)
    assert regular_input(big, "measurements", max_bytes=20 << 20) == big


# --- the policy as an API ----------------------------------------------------------------------------
def test_check_output_file_and_folder_rules(tmp_path):
    f = tmp_path / "a.json"
    assert check_output_file(f) == f  # new
    f.write_text("{}")
    with pytest.raises(OutputError, match="--force"):
        check_output_file(f)
    with pytest.raises(OutputError, match="not a plan"):
        check_output_file(f, True, "plan", lambda p: False)
    assert check_output_folder(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert check_output_folder(tmp_path / "empty")
    with pytest.raises(OutputError, match="working directory"):
        check_output_folder(Path.cwd(), force=True)
    with pytest.raises(OutputError, match="root or home"):
        check_output_folder(Path.home(), force=True)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    p = tmp_path / "x.txt"
    atomic_write_text(p, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(p, "new")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["x.txt"]


def test_replace_folder_failure_keeps_the_old_profile(tmp_path):
    prof = load_profile(BASE)
    out = prof.save(tmp_path / "p")
    before = _snapshot(out)

    def fill(tmp: Path) -> None:
        (tmp / "profile.json").write_text("{}")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        replace_folder(out, fill)
    assert _snapshot(out) == before and os.listdir(tmp_path) == ["p"]


# --- datasets: repair drops only what is broken --------------------------------------------------------
COLUMNS = ["config_id", "model", "device", "framework", "processor", "kernel", "impl", "linked", "params",
           "config", "status", "latency_ms"]


def _dataset(path: Path, n: int, batch: int = 10) -> Path:
    """A collected-style dataset of ``n`` rows appended in batches (trainable: conv rows)."""
    s = DatasetStore(path, COLUMNS + ["mean_ms", "std_ms", "min_ms", "count", "error"],
                     {"device": "host", "backend": "ort-cpu", "threads": 1, "cores": None})
    rows = []
    for i in range(n):
        c = 8 + i % 24
        params = {"Input_shape": 14, "Input_w": 14, "Input_channel": c, "Filter": c, "Kernel": 3, "Stride": 1,
                  "Output_shape": 14, "Output_w": 14}
        rows.append({"config_id": f"c{i:05d}", "model": "single:CONV_2D", "device": "host",
                     "framework": "onnxruntime", "processor": "cpu", "kernel": "CONV_2D", "impl": "igemm",
                     "linked": "", "params": params, "config": {}, "status": "ok",
                     "latency_ms": 0.01 * c * (1 + 0.01 * (i % 7))})
    for k in range(0, n, batch):
        s.append(rows[k:k + batch])
    return path


def test_one_corrupted_byte_loses_at_most_its_own_lines_and_readers_never_rewrite(tmp_path):
    path = _dataset(tmp_path / "d.csv", 1000)
    pristine = path.read_bytes()
    lines = pristine.split(b"\n")
    header = len(lines[0]) + len(lines[1]) + 2
    rng = random.Random(0)
    ids = [r["config_id"] for r in DatasetStore(path).rows()]
    for trial in range(25):
        path.write_bytes(pristine)
        for old in tmp_path.glob("d.csv.bak-*"):
            old.unlink()
        pos = rng.randrange(header, len(pristine) - 1)
        data = bytearray(pristine)
        data[pos] = (data[pos] + rng.randrange(1, 255)) % 256
        path.write_bytes(bytes(data))
        # a reader skips the broken line(s) and leaves the file as it is
        read = DatasetStore(path)
        assert path.read_bytes() == bytes(data)
        kept = [r["config_id"] for r in read.rows()]
        line_of = pristine[:pos].count(b"\n") - 2  # data row hit (0-based)
        lost = set(ids) - set(kept)
        assert lost <= {ids[line_of], *ids[line_of + 1:line_of + 2]}, (trial, pos, lost)
        assert len(kept) >= 998
        # the writer repairs: same rows kept, the original backed up, one line said
        w = DatasetStore(path, repair=True)
        if lost:
            backups = list(tmp_path.glob("d.csv.bak-*"))
            assert len(backups) == 1 and backups[0].read_bytes() == bytes(data)
            assert "every other row kept" in w.repair_report and str(backups[0]) in w.repair_report
        assert [r["config_id"] for r in DatasetStore(path).rows()] == kept


def test_row_eleven_of_a_1111_row_dataset(tmp_path):
    """The issue's case: one byte of data row 11 changed; the next open used to truncate
    the dataset to 10 rows."""
    path = _dataset(tmp_path / "host.csv", 1111, batch=25)
    data = path.read_bytes().split(b"\n")
    row = data[2 + 10]
    data[2 + 10] = row[:5] + (b"X" if row[5:6] != b"X" else b"Y") + row[6:]
    path.write_bytes(b"\n".join(data))
    s = DatasetStore(path, repair=True)
    assert len(s.rows()) == 1110 and "1 corrupted line(s) (line 13)" in s.repair_report


def test_a_torn_tail_is_cut_and_the_rest_appends(tmp_path):
    path = _dataset(tmp_path / "d.csv", 30)
    with open(path, "ab") as f:
        f.write(b"c99999,single:CONV_2D,host")  # a kill in the middle of a batch
    assert len(DatasetStore(path).rows()) == 30 and path.read_bytes().endswith(b"host")
    s = DatasetStore(path, repair=True)
    assert "torn last line" in s.repair_report
    s.append([{c: "1" for c in s.columns}])
    assert len(DatasetStore(path).rows()) == 31


def test_a_dataset_whose_header_is_damaged_is_refused_untouched(tmp_path):
    path = _dataset(tmp_path / "d.csv", 20)
    data = bytearray(path.read_bytes())
    data[30] ^= 0x55  # inside the JSON of the header line
    path.write_bytes(bytes(data))
    from oplat.errors import DatasetError

    with pytest.raises(DatasetError, match="untouched"):
        DatasetStore(path, repair=True)
    assert path.read_bytes() == bytes(data) and not list(tmp_path.glob("*.bak-*"))


def test_collect_on_a_new_file_says_nothing_was_already_there(tmp_path, capsys):
    out = tmp_path / "new.csv"
    assert main(["collect", "--backend", "ort-cpu", "--out", str(out), "--budget", "3s", "--max-configs", "40",
                 "--kernels", "CONV_2D"]) == 0
    assert "already there 0" in capsys.readouterr().out
