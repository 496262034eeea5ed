"""Which phone, processor or framework runs these models fastest: every model predicted
with every matching profile, under the coverage policy (refusals recorded, not raised)."""

from __future__ import annotations

import fnmatch
from typing import Any, Callable, Mapping, Sequence

from .errors import OplatError
from .model_io import load_model
from .policy import PredictionRefused, check_batch, judge
from .profile import list_profiles, load_profile


def compare_models(models: Sequence[str], pattern: str = "*/tflite-gpu",
                   input_shapes: Mapping[str, Sequence[int]] | None = None, strict: bool = False,
                   progress: Callable[[int], None] | None = None) -> tuple[list[str], dict[str, float | None],
                                                                            dict[str, dict[str, dict[str, Any]]]]:
    """(matching profile ids, each one's held-out end-to-end MAPE, ``{model: {profile:
    {"total_ms", "complete", "coverage_flops", "notes"} or {"total_ms": None, "refused"}}}``).
    ``progress(n)`` is called once per profile with the number of profiles."""
    ids = [pid for pid, _ in list_profiles() if fnmatch.fnmatch(pid, pattern)]
    if not ids:
        raise OplatError(f"no profile matches {pattern!r} (see 'oplat profiles')")
    graphs = {m: load_model(m, input_shapes) for m in models}
    table: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in models}
    accuracy: dict[str, float | None] = {}
    for pid in ids:
        prof = load_profile(pid)
        accuracy[pid] = ((prof.meta.get("accuracy") or {}).get("end_to_end") or {}).get("mape")
        for m, g in graphs.items():
            try:
                check_batch(prof, g, m)
                res = prof.predict(g)
                notes = judge(res, g, prof, strict=strict, label=m)
                table[m][pid] = {"total_ms": res.total_ms, "complete": res.complete,
                                 "coverage_flops": res.coverage.get("flops"), "notes": notes}
            except PredictionRefused as e:
                table[m][pid] = {"total_ms": None, "refused": str(e)}
        if progress:
            progress(len(ids))
    return ids, accuracy, table


__all__ = ["compare_models"]
