"""How predictions and profiles are shown to people: a kernel's short geometry for the
per-op table, a profile's one-line description and accuracy, and the plots (matplotlib
PNG, imported only when a plot is asked for)."""

from __future__ import annotations

from typing import Any, Mapping

from .extras import need
from .fitting import error_metrics


def kernel_shape(kernel: str, p: dict) -> str:
    """Short geometry of a kernel for the per-op table (``56x64->56x64 k3s1``)."""
    if "Output_elements" in p:  # element-wise and layout kernels
        return "x".join(str(d) for d in p.get("Output_shape") or ()) or str(p["Output_elements"])
    if kernel == "BATCH_MATMUL":
        return f"{p.get('Batch')}x[{p.get('M')}x{p.get('K')}]x[{p.get('K')}x{p.get('N')}]"
    if kernel in ("SOFTMAX", "LAYER_NORM"):
        return f"{p.get('Rows')}x{p.get('Cols')}"
    c_out = p.get("Filter", p.get("Input_channel"))
    if kernel == "DEPTHWISE_CONV_2D":
        c_out = p.get("Input_channel", 1) * p.get("Filter", 1)
    if kernel == "MEAN":
        c_out = p.get("Input_channel")
    out_hw = 1 if kernel == "MEAN" else p.get("Output_shape")
    return (f"{p.get('Input_shape')}x{p.get('Input_channel')}->{out_hw}x{c_out}"
            + (f" k{p['Kernel']}s{p.get('Stride', 1)}" if p.get("Kernel") and kernel != "CONCATENATION" else ""))


def breakdown_png(res, path: str, title: str | None = None) -> None:
    """Per-kernel bar chart of one prediction (``oplat predict --plot``): bars coloured by
    kernel family, with a legend of exactly those colours, titled by ``title`` (the model
    file) and the total."""
    matplotlib = need("matplotlib", "a plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    vals = [o.predicted_ms or 0.0 for o in res.ops]
    kinds = sorted({o.kernel for o in res.ops})
    colors = {k: plt.cm.tab10(i % 10) for i, k in enumerate(kinds)}
    fig, ax = plt.subplots(figsize=(max(7, len(vals) * 0.08), 3.8))
    ax.bar(range(len(vals)), vals, color=[colors[o.kernel] for o in res.ops], width=0.9)
    ax.legend(handles=[Patch(color=colors[k], label=k) for k in kinds], fontsize=7, ncol=2)
    ax.set_xlabel("kernel (execution order)")
    ax.set_ylabel("predicted ms")
    bound = "" if res.complete else "at least "
    ax.set_title(f"{title or res.model} on {res.profile}: {bound}{res.total_ms:.2f} ms\n"
                 f"(kernels {res.ops_ms:.2f} ms, end-to-end term {res.overhead_ms:+.2f} ms)", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def scatter_png(points: Mapping[str, Any], path: str) -> None:
    """Predicted vs measured scatter, one panel per device (end to end and per op)."""
    matplotlib = need("matplotlib", "a plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devs = list(points)
    fig, axes = plt.subplots(2, len(devs), figsize=(3.6 * len(devs), 7.0), squeeze=False)
    for j, dev in enumerate(devs):
        for i, kind in enumerate(("e2e", "op")):
            pred, true = points[dev][kind]
            ax = axes[i][j]
            if len(true):
                m = error_metrics(pred, true)
                ax.loglog(true, pred, ".", ms=3 if kind == "op" else 5, alpha=0.5,
                          label=f"{m['n']} held-out {'models' if kind == 'e2e' else 'ops'}\n"
                                f"MAPE {m['mape']:.1%}, {m['within_10']:.0%} within ±10%")
                lo, hi = min(min(true), min(pred)), max(max(true), max(pred))
                ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="predicted = measured")
                ax.plot([lo, hi], [lo * 1.1, hi * 1.1], "k:", lw=0.6, label="±10%")
                ax.plot([lo, hi], [lo * 0.9, hi * 0.9], "k:", lw=0.6)
                ax.legend(fontsize=6, loc="lower right")
            ax.set_title(f"{dev} {'end-to-end' if kind == 'e2e' else 'per op'}", fontsize=9)
            ax.set_xlabel("measured ms", fontsize=8)
            ax.set_ylabel("predicted ms", fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


def compare_png(table: Mapping[str, Mapping[str, Mapping[str, Any]]], accuracy: Mapping[str, float | None],
                path: str) -> None:
    """Grouped bars: one group per model, one bar per profile (``oplat compare --plot``);
    refused predictions are left out, lower bounds hatched."""
    matplotlib = need("matplotlib", "a plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from pathlib import Path

    models = list(table)
    pids = sorted({p for m in models for p in table[m]})
    width = 0.8 / max(len(pids), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(models) * max(1, len(pids) / 4)) + 3, 4))
    for j, pid in enumerate(pids):
        vals = [table[m][pid].get("total_ms") for m in models]
        xs = np.arange(len(models)) + (j - (len(pids) - 1) / 2) * width
        mape = accuracy.get(pid)
        label = pid + (f" (MAPE {mape:.1%})" if mape is not None else "")
        bars = ax.bar(xs, [v or 0.0 for v in vals], width, label=label, color=plt.cm.tab20(j % 20))
        for b, m in zip(bars, models):
            if not table[m][pid].get("complete", True):
                b.set_hatch("//")
    ax.set_xticks(np.arange(len(models)), [Path(m).name for m in models], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title("predicted latency per profile (hatched: lower bound; missing: refused)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="profile (held-out MAPE)",
              title_fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def save_png(fig, path: str) -> None:
    """Write a matplotlib figure as PNG atomically (:mod:`oplat.outputs`) and close it."""
    import io

    import matplotlib.pyplot as plt

    from .outputs import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def profile_summary(meta: Mapping[str, Any]) -> tuple[str, str]:
    """(what the profile describes, its held-out accuracy) in words, from its metadata."""
    accuracy = meta.get("accuracy", {})
    acc = accuracy.get("end_to_end", {})
    method = accuracy.get("method", "CV")
    how = ("held-out CV" if "CV" in method else f"leave-one-out on {acc.get('n')} measurements"
           if "calibration" in method else "held-out models")
    acc_s = (f"e2e MAPE {acc['mape']:.1%}, within ±10% {acc['within_10']:.0%} ({how})"
             if acc.get("mape") is not None else "accuracy not measured")
    machine = meta.get("collection", {}).get("machine", {}) if meta.get("device") == "host" else {}
    proc = (meta.get("gpu", "") if meta.get("processor") == "gpu"
            else f"{meta.get('soc', '')} CPU {meta.get('core_set', '')} {meta.get('precision', '')}".strip())
    what = (f"{meta.get('phone')} {proc}" if meta.get("phone")
            else f"{machine.get('cpu', meta.get('device'))} ({meta.get('framework')}, {meta.get('processor')})")
    return what.strip(), acc_s


__all__ = ["kernel_shape", "breakdown_png", "scatter_png", "compare_png", "save_png", "profile_summary"]
