import os
import random
import signal
import subprocess
import sys
import time

import pytest

from oplat.errors import DatasetError
from oplat.store import DatasetStore

COLS = ["config_id", "kernel", "params", "latency_ms"]


def test_append_and_read_back(tmp_path):
    s = DatasetStore(tmp_path / "d.csv", COLS, meta={"backend": "ort-cpu"})
    assert s.append([{"config_id": "a", "kernel": "CONV_2D", "params": {"k": 3}, "latency_ms": 1.5},
                     {"config_id": "b", "kernel": "MEAN", "params": {"c": 8}, "latency_ms": 0.25}]) == 2
    again = DatasetStore(tmp_path / "d.csv")
    assert again.meta == {"backend": "ort-cpu"} and again.columns == COLS
    assert [r["config_id"] for r in again.rows()] == ["a", "b"]
    assert again.rows()[0]["params"] == '{"k": 3}'
    assert again.done_ids() == {"a", "b"}


def test_torn_tail_is_cut_by_the_writer_only(tmp_path):
    p = tmp_path / "d.csv"
    s = DatasetStore(p, COLS)
    s.append([{"config_id": str(i), "kernel": "X", "params": "", "latency_ms": i} for i in range(3)])
    with open(p, "ab") as f:
        f.write(b"3,X,,3,deadbee")  # a row cut mid-write, no newline
    with open(p, "ab") as f:
        pass
    s2 = DatasetStore(p)  # a reader skips the torn tail and changes nothing
    assert [r["config_id"] for r in s2.rows()] == ["0", "1", "2"]
    assert p.read_bytes().endswith(b"deadbee")
    s2 = DatasetStore(p, repair=True)  # the writer (collect) cuts it before appending
    assert [r["config_id"] for r in s2.rows()] == ["0", "1", "2"]
    assert p.read_bytes().endswith(b"\n") and "torn last line" in s2.repair_report
    s2.append([{"config_id": "3", "kernel": "X", "params": "", "latency_ms": 3}])
    assert [r["config_id"] for r in DatasetStore(p).rows()] == ["0", "1", "2", "3"]


def test_corrupted_row_stops_at_checksum(tmp_path):
    p = tmp_path / "d.csv"
    s = DatasetStore(p, COLS)
    s.append([{"config_id": "a", "kernel": "X", "params": "", "latency_ms": 1}])
    data = p.read_bytes().replace(b"a,X,,1,", b"a,X,,9,")
    p.write_bytes(data)
    assert DatasetStore(p).rows() == []


def test_failed_write_leaves_no_torn_batch(tmp_path, monkeypatch):
    p = tmp_path / "d.csv"
    s = DatasetStore(p, COLS)
    s.append([{"config_id": "a", "kernel": "X", "params": "", "latency_ms": 1}])
    real_write = os.write

    def half_write(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_write)
    with pytest.raises(OSError):
        s.append([{"config_id": str(i), "kernel": "X", "params": "", "latency_ms": i} for i in range(50)])
    monkeypatch.setattr(os, "write", real_write)
    assert [r["config_id"] for r in DatasetStore(p).rows()] == ["a"]


def test_wrong_columns_and_foreign_files(tmp_path):
    p = tmp_path / "d.csv"
    DatasetStore(p, COLS)
    with pytest.raises(DatasetError, match="columns differ"):
        DatasetStore(p, ["x", "y"])
    q = tmp_path / "other.csv"
    q.write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="not an oplat dataset"):
        DatasetStore(q)


WRITER = r"""
import sys
sys.path.insert(0, {root!r})
from oplat.store import DatasetStore
s = DatasetStore({path!r}, ["config_id", "kernel", "params", "latency_ms"])
done = s.done_ids()
i = 0
while True:
    batch = [{{"config_id": str(i + j), "kernel": "CONV_2D", "params": "x" * 300, "latency_ms": i + j}}
             for j in range(20) if str(i + j) not in done]
    if s.append(batch):
        print(i + 19, flush=True)
    i += 20
    if i >= 4000:
        break
"""


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    from conftest import ROOT

    p = tmp_path / "d.csv"
    script = WRITER.format(root=str(ROOT), path=str(p))
    rng = random.Random(0)
    confirmed = -1
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        time.sleep(0.3 + rng.random() * 0.4)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        lines = out.split()
        if lines:
            confirmed = max(confirmed, int(lines[-1]))
        ids = [r["config_id"] for r in DatasetStore(p).rows()]  # readable after every kill
        assert len(ids) == len(set(ids)), "duplicated rows"
        assert set(map(str, range(confirmed + 1))) <= set(ids), "a confirmed row was lost"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    ids = [r["config_id"] for r in DatasetStore(p).rows()]
    assert sorted(map(int, ids)) == list(range(4000))
