"""Parsers on verbatim outputs of the real tools (tests/data/tool_outputs, see SOURCES.md)."""

from pathlib import Path

import pytest

from android_harness.parsers import (ParseError, parse_benchmark_model, parse_op_profiling, parse_ort_perf_test,
                                     parse_ort_profile)

D = Path(__file__).parents[1] / "data" / "tool_outputs"


def read(name):
    return (D / name).read_text()


@pytest.mark.parametrize("name, avg_us, first_us, init_us, count, mem", [
    ("tf24_cpu_mi11.txt", 249684, 360262, 16242, 50, (4.92969, 138.809)),
    ("tf24_nnapi_fp16_mi11.txt", 92571.2, 120877, 365972, 50, (6.90625, 61.0547)),
    ("tf2x_gpu_delegate_mnv3_seg.txt", 8680.33, 11147, 1451507, 110, (63.4883, 63.4883)),
    ("tf2x_riscv_mobilenet_v1_op_profiling.txt", 2.95034e06, 3512391, 17187, 50, (4.21094, 46.0859)),
    ("tflite_logcat_percentiles.txt", 145528, 187533, 92318, 25, (54.2852, 73.4102)),
])
def test_benchmark_model_summaries(name, avg_us, first_us, init_us, count, mem):
    r = parse_benchmark_model(read(name))
    assert r["avg_us"] == pytest.approx(avg_us) and r["avg_ms"] == pytest.approx(avg_us / 1000)
    assert r["first_us"] == first_us and r["init_us"] == init_us
    assert r["runs"]["count"] == count
    assert (r["memory_init_mb"], r["memory_overall_mb"]) == pytest.approx(mem)


def test_percentiles_and_warmup_line_without_avg():
    r = parse_benchmark_model(read("tflite_logcat_percentiles.txt"))
    assert r["runs"]["median"] == 141253 and r["runs"]["p95"] == 187533
    riscv = parse_benchmark_model(read("tf2x_riscv_mobilenet_v1_op_profiling.txt"))
    assert riscv["counts"][0] == {"count": 1, "curr": 3512391.0}  # warm-up line, no avg
    assert riscv["runs"]["avg"] == pytest.approx(2.95034e06)
    assert riscv["init_ms"] == pytest.approx(17.187)


def test_op_profiling_with_start_column_and_delegate_nodes():
    ops = parse_op_profiling(read("tf24_nnapi_op_profiling_mi11.txt"))
    assert len(ops) == 11  # the Run Order table only, not 'Top by Computation Time'
    assert [o["type"] for o in ops].count("TfLiteNnapiDelegate") == 3
    d = ops[6]
    assert d["avg_ms"] == pytest.approx(79.010) and d["first_ms"] == pytest.approx(78.701)
    assert d["start_ms"] == pytest.approx(8.377) and d["percent"] == pytest.approx(49.781)
    assert d["name"].startswith("[model/tf.nn.silu_16/mul, ")
    gpu = parse_benchmark_model(read("tf2x_gpu_delegate_mnv3_seg.txt"))["ops"]
    assert gpu == [{"type": "TfLiteGpuDelegateV2", "name": "[Identity]:77", "first_ms": 8.317, "avg_ms": 8.671,
                    "percent": 100.0, "times_called": 1.0, "start_ms": 0.0, "mem_kb": 0.0}]
    riscv = parse_benchmark_model(read("tf2x_riscv_mobilenet_v1_op_profiling.txt"))["ops"]
    assert [o["type"] for o in riscv][:3] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D"]
    assert riscv[-1]["type"] == "SOFTMAX" and riscv[-1]["avg_ms"] == pytest.approx(0.233)


def test_op_profiling_without_start_column_and_info_prefix(tmp_path):
    text = ("INFO: Operator-wise Profiling Info for Regular Benchmark Runs:\n"
            "============================== Run Order ==============================\n"
            "\t             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]\n"
            "\t                 CONV_2D\t    0.512\t    0.498\t 71.000%\t 71.000%\t     0.000\t        1\t[conv]:0\n"
            "\t                    MEAN\t    0.210\t    0.203\t 29.000%\t100.000%\t     0.000\t        1\t[y]:1\n\n")
    ops = parse_op_profiling(text)
    assert [(o["type"], o["avg_ms"], o["start_ms"]) for o in ops] == [("CONV_2D", 0.498, None), ("MEAN", 0.203, None)]


def test_op_profiling_csv_form():
    text = ("Operator-wise Profiling Info for Regular Benchmark Runs:\n"
            "node type,first,avg_ms,%,cdf%,mem KB,times called,name\n"
            "CONV_2D,0.512,0.498,71.000%,71.000%,0.000,1,[conv]:0\n"
            "MEAN,0.210,0.203,29.000%,100.000%,0.000,1,[y]:1\n")
    ops = parse_op_profiling(text)
    assert [o["type"] for o in ops] == ["CONV_2D", "MEAN"] and ops[1]["times_called"] == 1


def test_failed_run_raises():
    with pytest.raises(ParseError, match="did not finish"):
        parse_benchmark_model(read("tf24_nnapi_failed_mi11.txt"))


@pytest.mark.parametrize("name, avg, runs, p50, peak", [
    ("ort_perf_test_pixel6_resnet18.txt", 19.918, 100, 19.9047, 109531136),
    ("ort_perf_test_k1_spacemit.txt", 62.2935, 100, 60.3562, 114634752),
])
def test_onnxruntime_perf_test(name, avg, runs, p50, peak):
    r = parse_ort_perf_test(read(name))
    assert r["avg_ms"] == pytest.approx(avg) and r["runs"] == runs
    assert r["percentiles_ms"]["p50"] == pytest.approx(p50) and r["peak_bytes"] == peak


def test_onnxruntime_profile_json():
    events = [{"cat": "Session", "name": "model_run", "dur": 900},
              {"cat": "Node", "name": "conv1_kernel_time", "dur": 400, "args": {"op_name": "Conv"}},
              {"cat": "Node", "name": "conv1_kernel_time", "dur": 600, "args": {"op_name": "Conv"}},
              {"cat": "Node", "name": "relu_fence_before", "dur": 1, "args": {"op_name": "Relu"}}]
    assert parse_ort_profile(events) == [{"name": "conv1", "type": "Conv", "avg_ms": 0.5, "times_called": 2}]
