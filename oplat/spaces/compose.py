"""A search space's networks predicted from cached pieces, not built and lowered one by one.

The networks of a search space are made of a few pieces in many combinations: 2,000
NAS-Bench-201 networks run 121,855 kernels of 96 kinds (``bench/results/nas_throughput.json``).
A space marks its pieces with :meth:`~oplat.zoo.builder.OnnxBuilder.segment` (a key that
fixes what the piece builds from inputs of given shapes); here a network is first
*recorded*, piece by piece, without building an op, and each piece is built, lowered and
predicted once, on its own, then reused wherever it recurs.

A piece lowered alone gives the kernels it gives inside its network when nothing the
lowering does crosses between pieces. Every lowering decision of the :data:`PIECEWISE
<oplat.lowering.PIECEWISE>` backends is local to a producer and its consumers, so that
holds when every tensor passed between pieces either has several consumers or a single
consumer that fuses with nothing before it (a convolution, a pool, a matmul) and a
producer that nothing absorbs (not a pad, identity or quantization op). Each piece's
prediction records what its lowering saw at its borders (the consumers of each input, the
producer of its output, after the converter passes). One crossing is common enough to
handle in place: a lone ReLU that the producer's last kernel takes in (a NAS-Bench-201
node read by one conv edge); both pieces are then predicted with that border in view, the
producer with a stand-in ReLU after it and the reader with a stand-in 1x1 conv before it
(the stand-ins' own kernels dropped), and kept only if the two agree. Wherever the
condition fails otherwise, the pieces between producer and consumer are merged into one
and predicted together, so the answer is always that of the whole network, at worst by
lowering all of it as one piece.
Two network-wide facts are composed too: which pieces are dead (the TFLite converter and
TorchScript drop ops whose results reach no output) and the pre-activation flag of the
convolution rules. Totals are bit-identical to the per-model path's: the per-kernel
predictions are summed in the same order (``tests/oplat/test_compose.py``; the whole check
over thousands of networks in ``bench/nas_throughput.py``).

A space whose network function calls builder methods outside any segment, and profiles of
the other backends (onnxruntime's layout reorders are placed by walking the whole
network), are predicted network by network (:meth:`SpaceComposer.summary` falls back to
building the network whole, as :func:`oplat.sweep.score_archs` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..features import GLUE_KEYS, predictor_key
from ..lowering import PIECEWISE, LoweredModel, lower
from ..overhead import OVERHEAD_FEATURES, KernelTallies, kernel_tallies
from ..predict import (coverage_counts, coverage_from_counts, end_to_end_from_tallies, gc_paused,
                       predict_models)
from ..profile import Profile
from . import SearchSpace
from .graph_builder import GraphBuilder

# a lone consumer of these types fuses with nothing that produced its input
OPAQUE_CONSUMERS = frozenset(("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "MatMul", "Gemm"))
# producers a consumer absorbs or that conversion removes
ABSORBED_PRODUCERS = frozenset(("Pad", "Identity", "Dropout", "Cast", "QuantizeLinear", "DequantizeLinear",
                                "DynamicQuantizeLinear"))
_ACTS = ("Relu", "Clip")
# pieces kept in memory (a NAS-Bench-201 sweep of the whole space makes 77,000, most of
# them cells specific to one architecture)
MAX_PIECES = 100_000
_NO_CTX: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())


class NotComposable(Exception):
    """The network function built something outside a segment."""


@dataclass(slots=True)
class _Seg:
    sid: int  # the interned (key, pattern, input shapes): what the piece is
    fn: Callable[..., str]
    inputs: tuple[str, ...]  # distinct input tensors
    pattern: tuple[int, ...]  # fn's i-th argument is inputs[pattern[i]]
    out: str


class _Recorder:
    """Stands in for the builder while a network function (or a segment's function) runs:
    records its segments, builds nothing."""

    def __init__(self, composer: "SpaceComposer", inputs: dict[str, tuple[int, ...]]) -> None:
        self.shapes: dict[str, tuple[int, ...]] = dict(inputs)
        self.segs: list[_Seg] = []
        self._c = composer

    def segment(self, key: Any, fn: Callable[..., str], *inputs: str) -> str:
        uniq = tuple(dict.fromkeys(inputs))
        pattern = tuple(uniq.index(x) for x in inputs) if len(uniq) != len(inputs) else tuple(range(len(inputs)))
        sid, out_shape, alias = self._c._seg_info(key, fn, pattern, tuple(self.shapes[x] for x in uniq))
        if alias is not None:  # the piece hands one of its inputs on
            return uniq[alias]
        name = f"s{len(self.segs)}"
        self.shapes[name] = out_shape
        self.segs.append(_Seg(sid, fn, uniq, pattern, name))
        return name

    def __getattr__(self, attr: str) -> Any:
        raise NotComposable(f"the network builds {attr!r} outside a segment")


@dataclass(slots=True)
class _Piece:
    """One piece (a run of segments) as predicted alone, and what its lowering saw at its
    borders."""

    vals: list[tuple[str, float]]  # (predictor key, ms) of each predicted kernel, in order
    n_ops: int  # kernels a profile predicts one by one (with or without a regressor)
    tallies: KernelTallies
    unsupported: list[dict[str, Any]]
    n_in: int
    flops_in: float
    flops_out: float
    approx_ms: list[float]
    slot_used: list[bool]  # each input read by a live op
    slot_consumers: list[list[str]]  # each input's consumers after the converter passes
    slot_conv: list[bool]  # a convolution reads the input
    slot_conv_act: list[bool]  # a convolution reads ReLU/Clip of the input
    out_internal: list[int]  # each output's consumers inside the piece
    out_producer: list[str | None]  # each output's producer after the passes
    out_kind: list[Any]  # "bn", "act_bn", ("act_slot", i) or None: for the pre-activation flag
    pre_activation: bool  # detected inside the piece
    leaf: bool = True  # lowered itself (not composed of smaller pieces)
    slot_relu: list[bool] = field(default_factory=list)  # read by one ReLU whose result fuses no further
    out_linked: list[bool] = field(default_factory=list)  # its last kernel took in the ReLU after it
    in_linked: list[bool] = field(default_factory=list)  # the ReLU reading the input went into its producer


@dataclass
class ComposeStats:
    """What the composer did: pieces lowered or composed of smaller ones, cache hits,
    merges, networks predicted whole and why."""

    networks: int = 0
    pieces_lowered: int = 0
    pieces_composed: int = 0
    piece_hits: int = 0
    merges: int = 0
    relu_borders: int = 0  # borders where the reader's ReLU went into the producer's kernel, in place
    per_model: int = 0
    fallbacks: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Solution:
    """The live pieces of a run of segments, in order, and how their tensors connect."""

    live: list[tuple[int, _Piece, list[str], tuple[int, ...]]]  # (unit, piece, outside inputs, exports)
    readers: dict[str, list[tuple[int, int]]]  # tensor -> (position in live, slot) reading it
    where: dict[str, tuple[int, int]]  # tensor -> (position in live, export index) producing it
    pre_activation: bool


class SpaceComposer:
    """Predict networks of ``space`` with ``profile`` from cached pieces (see the module
    docstring); :meth:`summary` returns what :func:`oplat.sweep.summary` gives for the
    network built and predicted whole."""

    def __init__(self, profile: Profile, space: SearchSpace) -> None:
        self.profile, self.space = profile, space
        self.piecewise = profile.backend in PIECEWISE
        self._sids: dict[Any, tuple[int, tuple[int, ...] | None, int | None]] = {}
        self._sid_shapes: list[tuple[int, ...] | None] = []  # output shape by id
        self._pieces: dict[Any, _Piece] = {}
        self.stats = ComposeStats()
        meta = profile.meta.get("overhead", {})
        self._coef = meta.get("coef")
        self._names = tuple(meta.get("features") or OVERHEAD_FEATURES)
        self._glue_keys = {k for k in profile.boosters if k in GLUE_KEYS}

    # --- recording --------------------------------------------------------------
    def _seg_info(self, key: Any, fn: Callable[..., str], pattern: tuple[int, ...],
                  shapes: tuple[tuple[int, ...], ...]) -> tuple[int, tuple[int, ...] | None, int | None]:
        """(interned id, output shape, index of the input it hands on or None) of a segment."""
        ck = (key, pattern, shapes)
        hit = self._sids.get(ck)
        if hit is None:
            names = [f"in{i}" for i in range(len(shapes))]
            try:  # a segment made of segments: its shape from theirs, nothing built
                b: Any = _Recorder(self, dict(zip(names, shapes)))
                y = fn(b, *[names[p] for p in pattern])
            except NotComposable:
                b = GraphBuilder.with_inputs(self.space.name, dict(zip(names, shapes)))
                y = fn(b, *[names[p] for p in pattern])
            alias = names.index(y) if y in names else None
            hit = self._sids[ck] = (len(self._sids), b.shapes[y] if alias is None else None, alias)
            self._sid_shapes.append(hit[1])
        return hit

    def record(self, encoding: str) -> tuple[list[_Seg], str, dict[str, tuple[int, ...]]]:
        """The segments of ``encoding``'s network, its output tensor and every tensor's shape."""
        rec = _Recorder(self, {"input": tuple(self.space.input_shape)})
        out = self.space.network(rec, self.space.parse(encoding))
        return rec.segs, out, rec.shapes

    # --- pieces -----------------------------------------------------------------
    @staticmethod
    def _piece_key(segs: list[_Seg], i: int, j: int) -> tuple[tuple, list[str]]:
        """A run of segments as a cache key (what each is, how they connect), and its
        outside inputs."""
        if i == j:
            return (segs[i].sid,), list(segs[i].inputs)
        ext: dict[str, int] = {}
        local = {segs[s].out: s - i for s in range(i, j + 1)}
        parts = []
        for s in range(i, j + 1):
            sg = segs[s]
            wires = tuple(local[x] if x in local else -1 - ext.setdefault(x, len(ext)) for x in sg.inputs)
            parts.append((sg.sid, wires))
        return tuple(parts), list(ext)

    def _piece(self, segs: list[_Seg], i: int, j: int, key: tuple, ext: list[str], shapes: dict[str, tuple],
               exports: tuple[int, ...], flag: bool, ctx: tuple[tuple[int, ...], tuple[int, ...]]) -> _Piece:
        ck = (key, exports, flag, ctx)  # the segments' ids fix their inputs' shapes
        p = self._pieces.get(ck)
        if p is not None:
            self.stats.piece_hits += 1
            return p
        if len(self._pieces) >= MAX_PIECES:  # a long sweep: pieces made of pieces go first (cheap to redo)
            kept = {k: v for k, v in self._pieces.items() if v.leaf}
            self._pieces = kept if len(kept) < MAX_PIECES // 2 else {}
        p = self._pieces[ck] = self._make_piece(segs, i, j, ext, {f"in{k}": shapes[x] for k, x in enumerate(ext)},
                                                exports, flag, ctx)
        return p

    def _make_piece(self, segs: list[_Seg], i: int, j: int, ext: list[str], shapes: dict[str, tuple],
                    exports: tuple[int, ...], flag: bool, ctx: tuple[tuple[int, ...], tuple[int, ...]]) -> _Piece:
        """A piece composed of the segments its segments are made of, or else built and
        lowered on its own (``shapes``: its inputs', named in0, in1, ...)."""
        env = {x: f"in{k}" for k, x in enumerate(ext)}
        rec = _Recorder(self, shapes)
        expanded = False
        for s in range(i, j + 1):
            sg = segs[s]
            n_before = len(rec.segs)
            try:
                env[sg.out] = sg.fn(rec, *[env[sg.inputs[p]] for p in sg.pattern])
                expanded = True
                continue
            except NotComposable:  # a segment of ops: it stays one
                del rec.segs[n_before:]
            ins = tuple(env[x] for x in sg.inputs)
            name = env[sg.out] = f"s{len(rec.segs)}"
            rec.shapes[name] = self._sid_shapes[sg.sid]
            rec.segs.append(_Seg(sg.sid, sg.fn, ins, sg.pattern, name))
        if not expanded:  # nothing smaller to compose it of
            self.stats.pieces_lowered += 1
            return self._lower_piece(segs, i, j, ext, shapes, exports, flag, ctx)
        self.stats.pieces_composed += 1
        outs = [env[segs[i + e].out] for e in exports]
        fixed = ({outs[e] for e in ctx[0]}, {f"in{k}" for k in ctx[1]})
        return self._aggregate(self._solve(rec.segs, outs, rec.shapes, flag, fixed), list(shapes), outs)

    def _lower_piece(self, segs: list[_Seg], i: int, j: int, ext: list[str], shapes: dict[str, tuple],
                     exports: tuple[int, ...], flag: bool, ctx: tuple[tuple[int, ...], tuple[int, ...]]) -> _Piece:
        """Build, lower and predict a run of segments alone. Border context ``ctx``: the
        exports whose one reader (a ReLU) its last kernel may take in, given a stand-in
        ReLU; the inputs whose one reader (a ReLU) went into the kernel that produced them,
        given a stand-in 1x1 conv producing them. Stand-ins' own kernels are dropped."""
        absorb_out, absorbed_in = ctx
        names = list(shapes)
        b = GraphBuilder.with_inputs(self.space.name, {(f"sx{k}" if k in absorbed_in else n): sh
                                                       for k, (n, sh) in enumerate(shapes.items())})
        stand_ins: dict[str, int] = {}  # stand-in op -> slot
        for k in absorbed_in:
            names[k] = b.conv(f"sx{k}", shapes[f"in{k}"][1], 1, bias=False)
            stand_ins[b.g.producer(names[k]).name] = k
        slots = {n: k for k, n in enumerate(names)}
        env = {x: names[k] for k, x in enumerate(ext)}
        for s in range(i, j + 1):
            sg = segs[s]
            env[sg.out] = sg.fn(b, *[env[sg.inputs[p]] for p in sg.pattern])
        g = b.g
        outs = [env[segs[i + e].out] for e in exports]
        relus: dict[str, int] = {}  # stand-in ReLU op -> export
        g.outputs = list(outs)
        for e in absorb_out:
            g.outputs[e] = b.act(outs[e], "relu")
            relus[g.producer(g.outputs[e]).name] = e
        g.meta.update(producer="oplat.zoo", opset=b.opset, folded_marked=True, assumed_shapes=[])
        probe: dict[str, Any] = {}
        prof = self.profile
        lm = lower(g, prof.backend, prof.variant, pre_activation=flag, probe=probe)
        w = probe["work"]
        out_linked = [False] * len(exports)
        in_linked = [False] * len(ext)
        if stand_ins or relus:
            keep = []
            for kern in lm.kernels:
                if kern.name in stand_ins:  # the stand-in producer: did it take in the input's ReLU?
                    k = stand_ins[kern.name]
                    cons = w.consumers.get(names[k], ())
                    in_linked[k] = len(cons) == 1 and cons[0].name in kern.sources
                    if any(r in kern.sources for r in relus):  # a chain through the whole piece:
                        in_linked[k] = False  # not a border to cut here (the sides will disagree)
                        for r in relus:
                            out_linked[relus[r]] = True
                    continue
                if kern.name in relus:
                    continue  # the stand-in reader, left on its own
                for r in relus:
                    if r in kern.sources:
                        out_linked[relus[r]] = True
                keep.append(kern)
            lm = LoweredModel(lm.name, keep, lm.unsupported, lm.backend)
        res = predict_models(prof, [lm], totals=False)[0]
        n_in, f_in, f_out = coverage_counts(lm, res.unsupported, g, flops=True)
        live_in = probe["live_inputs"]

        def kind(t: str) -> Any:
            p = w.producer.get(t)
            if p is None:
                return None
            if p.type == "BatchNormAffine":
                return "bn"
            if p.type in _ACTS and p.inputs:
                q = w.producer.get(p.inputs[0])
                if q is not None and q.type == "BatchNormAffine":
                    return "act_bn"
                if q is None and p.inputs[0] in slots:
                    return ("act_slot", slots[p.inputs[0]])
            return None

        def conv_reads(t: str) -> bool:
            return any(c.type == "Conv" for c in w.consumers.get(t, ()))

        def relu_ends(t: str) -> bool:  # read by one ReLU whose result fuses with nothing after it
            cs = w.consumers.get(t, ())
            if len(cs) != 1 or cs[0].type != "Relu" or cs[0].outputs[0] in g.outputs:
                return False
            after = w.consumers.get(cs[0].outputs[0], ())
            return len(after) > 1 or (len(after) == 1 and after[0].type in OPAQUE_CONSUMERS)

        return _Piece(
            vals=[(predictor_key(o.kernel, o.impl), o.predicted_ms) for o in res.ops if o.predicted_ms is not None],
            n_ops=len(res.ops), tallies=kernel_tallies(lm.kernels, self._glue_keys), unsupported=res.unsupported,
            n_in=n_in, flops_in=f_in, flops_out=f_out,
            approx_ms=[o.predicted_ms for o in res.ops if o.note],
            slot_used=[t in live_in for t in slots],
            slot_consumers=[[c.type for c in w.consumers.get(t, ())] for t in slots],
            slot_conv=[conv_reads(t) for t in slots],
            slot_conv_act=[any(c.type in _ACTS and conv_reads(c.outputs[0]) for c in w.consumers.get(t, ()))
                           for t in slots],
            out_internal=[len(w.consumers.get(t, ())) - (e in absorb_out) for e, t in enumerate(outs)],
            out_producer=[p.type if (p := w.producer.get(t)) is not None else None for t in outs],
            out_kind=[kind(t) for t in outs],
            pre_activation=bool(probe["pre_activation"]),
            slot_relu=[relu_ends(t) for t in slots], out_linked=out_linked, in_linked=in_linked)

    def _aggregate(self, sol: _Solution, slots: list[str], outs: list[str]) -> _Piece:
        """The piece a solved run of segments makes, as if lowered on its own: its kernels'
        sums, and its borders from its pieces' borders."""
        live = sol.live
        p = _Piece([], 0, KernelTallies(), [], 0, 0.0, 0.0, [], [], [], [], [], [], [], [], sol.pre_activation,
                   leaf=False)
        for _, q, _, _ in live:
            p.vals += q.vals
            p.n_ops += q.n_ops
            p.tallies.add(q.tallies)
            p.unsupported += q.unsupported
            p.n_in += q.n_in
            p.flops_in += q.flops_in
            p.flops_out += q.flops_out
            p.approx_ms += q.approx_ms
        slot_of = {n: k for k, n in enumerate(slots)}

        def kind_of(t: str) -> Any:  # in this piece's terms
            w = sol.where.get(t)
            if w is None:
                return None
            _, q, ext, _ = live[w[0]]
            k = q.out_kind[w[1]]
            if isinstance(k, tuple):
                src = ext[k[1]]
                if src in slot_of:
                    return ("act_slot", slot_of[src])
                return "act_bn" if kind_of(src) == "bn" else None
            return k

        for t in slots:
            rs = sol.readers.get(t, [])
            p.slot_used.append(bool(rs))
            p.slot_consumers.append([c for r, k in rs for c in live[r][1].slot_consumers[k]])
            p.slot_conv.append(any(live[r][1].slot_conv[k] for r, k in rs))
            # a conv reading ReLU(input), the ReLU in one piece and the conv in another
            via = any(live[r][1].slot_conv_act[k] for r, k in rs) or any(
                live[r2][1].slot_conv[k2] for t2, rs2 in sol.readers.items()
                if kind_of(t2) == ("act_slot", slot_of[t]) for r2, k2 in rs2)
            p.slot_conv_act.append(via)
            one = rs[0] if len(rs) == 1 else None
            p.slot_relu.append(one is not None and live[one[0]][1].slot_relu[one[1]])
            p.in_linked.append(one is not None and live[one[0]][1].in_linked[one[1]])
        for t in outs:
            w = sol.where[t]
            q = live[w[0]][1]
            p.out_linked.append(q.out_linked[w[1]])
            p.out_internal.append(q.out_internal[w[1]]
                                  + sum(len(live[r][1].slot_consumers[k]) for r, k in sol.readers.get(t, [])))
            p.out_producer.append(q.out_producer[w[1]])
            p.out_kind.append(kind_of(t))
        return p

    # --- solving a run of segments ----------------------------------------------
    def _plan(self, segs: list[_Seg], outs: list[str], units: list[tuple[int, int]], shapes: dict[str, tuple],
              flag: bool, borders: dict[str, tuple], fixed: tuple[set[str], set[str]] = (set(), set())
              ) -> tuple[_Solution, list[tuple[int, int]], dict[str, tuple]]:
        """The live pieces of ``units`` (runs of ``segs``) computing ``outs``; the runs of
        units to merge (first, last); and the borders whose state changes: ``"relu"`` (the
        producer's last kernel may take in the ReLU that is its one reader: both pieces
        predicted with that context), ``"plain"`` (it does not), each with the producing and
        the reading unit it holds for (a merge makes a new one, to be checked again).
        Nothing to merge or change: every border is safe."""
        readers: dict[str, list[tuple[int, int]]] = {o: [] for o in outs}  # tensor -> (unit, slot)
        live = []
        for u in range(len(units) - 1, -1, -1):
            i, j = units[u]
            exports = tuple(s - i for s in range(i, j + 1) if segs[s].out in readers)
            if not exports:
                continue  # dead: nothing it computes reaches an output
            key, ext = self._piece_key(segs, i, j)
            ctx = _NO_CTX
            if borders or fixed[0] or fixed[1]:
                ctx = (tuple(e for e, ex in enumerate(exports)
                             if _state(borders, t := segs[i + ex].out, (i, j), None) == "relu" or t in fixed[0]),
                       tuple(k for k, x in enumerate(ext)
                             if _state(borders, x, None, (i, j)) == "relu" or x in fixed[1]))
            p = self._piece(segs, i, j, key, ext, shapes, exports, flag, ctx)
            pos = len(live)
            for k, x in enumerate(ext):
                if p.slot_used[k]:
                    r = readers.get(x)
                    if r is None:
                        readers[x] = [(pos, k)]
                    else:
                        r.append((pos, k))
            live.append((u, p, ext, exports))
        # positions counted from the end while walking back: turn them to network order
        n = len(live)
        live.reverse()
        readers = {t: [(n - 1 - r, k) for r, k in rs] for t, rs in readers.items()}
        where = {}
        for pos, (u, p, ext, exports) in enumerate(live):
            i = units[u][0]
            for e, ex in enumerate(exports):
                where[segs[i + ex].out] = (pos, e)
        # the borders: merge where a fusion could cross one
        outset = set(outs)
        merges = []
        change: dict[str, tuple] = {}
        for t, (pos, e) in where.items():
            rs = readers.get(t)
            if not rs:
                continue  # an output only
            u, p = live[pos][0], live[pos][1]
            cons = sum(len(live[r][1].slot_consumers[k]) for r, k in rs) + (t in outset)
            last = live[max(r for r, _ in rs)][0]
            if p.out_internal[e] or cons == 0:
                merges.append((u, last))
            elif cons == 1 and t not in outset:
                r, k = next((r, k) for r, k in rs if live[r][1].slot_consumers[k])
                q = live[r][1]
                here = (units[u], units[live[r][0]])
                state = _state(borders, t, *here)
                lone = q.slot_consumers[k][0]
                if p.out_producer[e] is None or p.out_producer[e] in ABSORBED_PRODUCERS:
                    merges.append((u, last))
                elif lone in OPAQUE_CONSUMERS:
                    continue
                elif not (lone == "Relu" and len(rs) == 1 and q.slot_relu[k]):
                    merges.append((u, last))
                elif state is None:
                    change[t] = ("relu", *here)  # predict both sides with the ReLU's fusion in view
                elif state == "relu" and not p.out_linked[e]:
                    change[t] = ("plain", *here)  # the producer takes in no ReLU: each side alone is exact
                elif state == "relu" and not q.in_linked[k]:
                    merges.append((u, last))  # the two sides disagree: predict them together
                elif state == "relu":
                    self.stats.relu_borders += 1
        sol = _Solution(live, readers, where, False)
        if merges or change:
            return sol, merges, change
        # the pre-activation flag: inside a piece, or a conv reading ReLU(BatchNorm) across a border
        pre = any(p.pre_activation for _, p, _, _ in live)
        if not pre:
            def kind_of(t: str) -> Any:
                w = where.get(t)
                return live[w[0]][1].out_kind[w[1]] if w else None

            for t, rs in readers.items():
                k_t = kind_of(t)
                if k_t is None:
                    continue
                if isinstance(k_t, tuple):  # ReLU of the producing piece's input: what fed that input?
                    k_t = "act_bn" if kind_of(live[where[t][0]][2][k_t[1]]) == "bn" else None
                for r, k in rs:
                    pr = live[r][1]
                    if (k_t == "act_bn" and pr.slot_conv[k]) or (k_t == "bn" and pr.slot_conv_act[k]):
                        pre = True
        sol.pre_activation = pre
        return sol, [], {}

    def _solve(self, segs: list[_Seg], outs: list[str], shapes: dict[str, tuple],
               flag: bool | None = None, fixed: tuple[set[str], set[str]] = (set(), set())) -> _Solution:
        """The live pieces of ``segs`` computing ``outs``, merged until every border is
        safe; with ``flag`` None, the pre-activation flag is found and applied. ``fixed``:
        the outputs whose one reader outside (a ReLU) their producer may take in, and the
        inputs whose one reader (a ReLU) went into their producer outside."""
        units = [(s, s) for s in range(len(segs))]
        cur = bool(flag)
        borders: dict[str, tuple] = {}
        while True:
            sol, merge, change = self._plan(segs, outs, units, shapes, cur, borders, fixed)
            if merge or change:
                borders.update(change)
                if merge:
                    self.stats.merges += len(merge)
                    units = _merged(units, merge)
            elif flag is None and sol.pre_activation and not cur:
                cur = True  # the flag changes how convolutions keep their pads: every piece again with it
            else:
                return sol

    def summary(self, encoding: str) -> dict[str, Any]:
        """The prediction record of ``encoding``'s network (what :func:`oplat.sweep.summary`
        gives for it built whole), from cached pieces."""
        self.stats.networks += 1
        if not self.piecewise:
            return self._per_model(encoding, f"{self.profile.backend} lowers whole networks")
        try:
            segs, out, shapes = self.record(encoding)
        except NotComposable as e:
            return self._per_model(encoding, str(e))
        if out == "input":
            return self._per_model(encoding, "the network's output is not a segment's")
        return self._compose([p for _, p, _, _ in self._solve(segs, [out], shapes).live])

    def _compose(self, pieces: list[_Piece]) -> dict[str, Any]:
        key_sums: dict[str, float] = {}
        tallies = KernelTallies()
        unsupported: list[dict[str, Any]] = []
        n_ops = n_in = 0
        f_in = f_out = 0.0
        approx: list[float] = []
        for p in pieces:
            for key, v in p.vals:  # the per-model path's order of additions
                key_sums[key] = key_sums.get(key, 0.0) + v
            tallies.add(p.tallies)
            unsupported += p.unsupported
            n_ops += p.n_ops
            n_in += p.n_in
            f_in += p.flops_in
            f_out += p.flops_out
            approx += p.approx_ms
        total, overhead = end_to_end_from_tallies(self._coef, self._names, tallies, key_sums)
        cov = coverage_from_counts(n_in, len(unsupported), f_in, f_out, True, ())
        rec = {"total_ms": total, "ops_ms": sum(key_sums.values()), "overhead_ms": overhead,
               "complete": not unsupported, "kernels": n_ops,
               "coverage": {"ops": cov["ops"], "flops": cov["flops"]}}
        if approx:
            rec["coverage"]["approximated_ops"] = len(approx)
        return rec

    def _per_model(self, encoding: str, why: str) -> dict[str, Any]:
        self.stats.per_model += 1
        if why not in self.stats.fallbacks:
            self.stats.fallbacks.append(why)
        return predict_models(self.profile, [self.space.graph(encoding)])[0].summary()

    def summaries(self, encodings: Iterable[str]) -> list[dict[str, Any]]:
        """:meth:`summary` of each encoding, with the garbage collector paused."""
        with gc_paused():
            return [{"arch": a, **self.summary(a)} for a in encodings]


def _state(borders: dict[str, tuple], t: str, producer: tuple[int, int] | None,
           reader: tuple[int, int] | None) -> str | None:
    """The state of the border at tensor ``t`` if it was decided for these units."""
    b = borders.get(t)
    if b is None or (producer is not None and b[1] != producer) or (reader is not None and b[2] != reader):
        return None
    return b[0]


def _merged(units: list[tuple[int, int]], runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``units`` with each run of them (first, last index) joined into one."""
    join = [False] * len(units)  # unit u joins the one after it
    for a, z in runs:
        for u in range(a, z):
            join[u] = True
    out, start = [], None
    for u, (i, j) in enumerate(units):
        start = i if start is None else start
        if not join[u]:
            out.append((start, j))
            start = None
    return out


__all__ = ["SpaceComposer", "ComposeStats", "NotComposable", "OPAQUE_CONSUMERS", "ABSORBED_PRODUCERS"]
