"""When a prediction is answered, flagged or refused.

Every result carries its coverage (the share of the model's kernels and of its FLOPs that
a regressor predicted) and a ``complete`` flag. An incomplete prediction is a lower bound
and always says so; under ``strict`` it is refused. A model whose predicted share is small
(an LSTM-only network, a quantized model on a float profile, a transformer on a CNN
profile) is refused whatever ``strict`` says: its total would be off by more than the
model itself. A batch other than the ones a profile was trained on is refused, naming the
trained range, never silently answered for batch 1.
"""

from __future__ import annotations

from .errors import OplatError
from .ir import Graph
from .predict import PredictionResult, graph_batch
from .profile import Profile

# below this share of its FLOPs predicted, a model is refused: the total would miss more
# than it holds
MIN_FLOPS_COVERAGE = 0.5
# a profile whose held-out end-to-end error is above this says so with every prediction
POOR_MAPE = 0.15


class PredictionRefused(OplatError):
    """The profile cannot predict this model (coverage, batch); the message names a fitting profile where one exists."""


def trained_batches(profile: Profile) -> tuple[int, int]:
    """The (smallest, largest) batch ``profile`` was trained on: ``batch_range`` in its
    metadata; every shipped profile measured batch 1 only."""
    lo, hi = (profile.meta.get("batch_range") or [1, 1])[:2]
    return int(lo), int(hi)


def check_batch(profile: Profile, graph: Graph, label: str | None = None) -> None:
    """Refuse a model run at a batch outside what ``profile`` was trained on."""
    b = graph_batch(graph)
    lo, hi = trained_batches(profile)
    if not lo <= b <= hi:
        rng = f"batch {lo}" if lo == hi else f"batches {lo}-{hi}"
        raise PredictionRefused(f"{label or graph.name}: batch {b}, but {profile.id} was trained on {rng} only "
                                f"(its measurements); predict batch {lo} (--input-shape with a leading {lo}) "
                                "or use a profile trained on batched runs")


def _missing(res: PredictionResult) -> str:
    types = res.coverage.get("missing_types") or sorted({u["op_type"] for u in res.unsupported})
    shown = ", ".join(types[:6]) + (", ..." if len(types) > 6 else "")
    share = res.coverage.get("flops")
    of = f", {1 - share:.0%} of its FLOPs" if share is not None else ""
    return f"{len(res.unsupported)} ops not predicted ({shown}{of})"


def _approximated(res: PredictionResult, profile: Profile) -> str:
    approx = res.approximated
    ms = sum(o.predicted_ms or 0.0 for o in approx)
    parts = []
    shapes = sorted({f"{o.params.get('Kernel')}x{o.params.get('Kernel_w')}" for o in approx
                     if o.note.startswith("non-square")})
    if shapes:
        parts.append(f"non-square kernels {', '.join(shapes[:6])}, priced at the FLOP rate of the square conv "
                     "they are a slice of")
    ranged = [o for o in approx if not o.note.startswith("non-square")]
    if ranged:
        parts.append(f"{len(ranged)} beyond the trained ranges (e.g. {ranged[0].kernel}: {ranged[0].note})")
    return (f"{len(approx)} kernels are outside what {profile.id} learned ({'; '.join(parts)}): "
            f"{ms:.2f} ms of the total")


def judge(res: PredictionResult, graph: Graph | None, profile: Profile, strict: bool = False,
          label: str | None = None) -> list[str]:
    """Warnings to show with ``res`` (always, whatever the output format); raises
    :class:`PredictionRefused` when the prediction must not be given (``label`` names the
    model in the message)."""
    name = label or res.model
    notes: list[str] = []
    if graph is not None:
        from .hints import advice

        notes = advice(graph, profile, res.complete)
    share = res.coverage.get("flops")
    if share is None:
        share = res.coverage.get("ops", 1.0)
    hint = ("; " + "; ".join(notes)) if notes else ""
    if not res.complete and share < MIN_FLOPS_COVERAGE:
        raise PredictionRefused(f"{name}: {profile.id} predicts only {share:.0%} of this model's FLOPs "
                                f"({_missing(res)}){hint}")
    if not res.complete and strict:
        raise PredictionRefused(f"{name}: incomplete prediction under --strict: {_missing(res)}{hint}")
    warnings = []
    mape = ((profile.meta.get("accuracy") or {}).get("end_to_end") or {}).get("mape")
    if mape is not None and mape > POOR_MAPE:
        warnings.append(f"{profile.id} predicts held-out models with a MAPE of {mape:.0%}: treat its numbers "
                        "as rough")
    if not res.complete:
        warnings.append(f"incomplete prediction: {_missing(res)}; the total is a lower bound")
    approx = res.approximated
    if approx:
        if strict:
            raise PredictionRefused(f"{name}: {_approximated(res, profile)}; refused under --strict")
        warnings.append(_approximated(res, profile))
    warnings += notes
    return warnings


__all__ = ["MIN_FLOPS_COVERAGE", "PredictionRefused", "trained_batches", "check_batch", "judge"]
