"""Multiply-accumulate work of an IR op, counted as FLOPs (2 per multiply-add): what a
prediction's coverage is weighed by, so that an unpredicted LSTM or quantized conv counts
for the work it does, not as one op among hundreds of reshapes."""

from __future__ import annotations

from .ir import Graph, Op

CONVS = ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose")
MATMULS = ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul")
RNNS = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _shape(g: Graph, name: str) -> tuple[int, ...] | None:
    t = g.tensors.get(name) if name else None
    return t.shape if t is not None else None


def _numel(shape) -> int:
    n = 1
    for d in shape or ():
        n *= int(d)
    return n


def op_flops(g: Graph, op: Op) -> float:
    """FLOPs of ``op``: convolutions and matmuls of every kind (float, integer,
    quantized, transposed), recurrent cells, and one per output element for the rest."""
    ins = [_shape(g, i) for i in op.inputs]
    out = _shape(g, op.outputs[0]) if op.outputs else None
    t = op.type
    w_idx = 3 if t == "QLinearConv" else 1
    if t in CONVS and len(ins) > w_idx and ins[w_idx] is not None and out is not None:
        w = ins[w_idx]
        per_out = _numel(w[1:])  # (C_in / group) x kernel
        if t == "ConvTranspose":  # each input pixel scatters into C_out/group x kernel outputs
            return 2.0 * _numel(ins[0]) * _numel(w[1:])
        return 2.0 * _numel(out) * per_out
    if t in MATMULS and out is not None:
        a = ins[0]
        if a is not None and len(a):
            k = a[-1] if not (t == "Gemm" and op.attrs.get("transA", 0) and len(a) == 2) else a[0]
            return 2.0 * _numel(out) * int(k)
    if t in RNNS and ins and ins[0] is not None:
        x = ins[0]
        hidden = int(op.attrs.get("hidden_size", 0) or 0)
        dirs = 2 if op.attrs.get("direction", "forward") == "bidirectional" else 1
        if len(x) == 3 and hidden:
            seq, batch, inp = x
            return 2.0 * RNNS[t] * hidden * (inp + hidden) * seq * batch * dirs
    return float(_numel(out))


__all__ = ["op_flops"]
