"""The OpenCL executor: fine-grained SVM buffers, the runtime's kernels (``kernels/*.cl``,
package data, built with ``-D`` defines: op codes from :mod:`coexec.layers`' tables and the
kernel variants), launches with their arguments set once, and the completion flag."""

from __future__ import annotations

import os
from importlib.resources import files
from typing import Any, Sequence

import numpy as np

from oplat.machine import pinned

from .errors import RuntimeUnavailable
from .layers import (BINARY_OPS, BROADCAST, CHANNELWISE, UNARY_MODES, LayerSpec, elements, inner_size, is_pointwise,
                     padded_dims, transpose_args, wants_padded_input)


# The kernel sources (package data) and the programs built from them: every source once
# with the op-code defines, and the variant sources once per variant (-D values; the
# kernel's name carries the variant).
BASE_SOURCES = ("conv.cl", "pool.cl", "elementwise.cl", "rows.cl", "sync.cl")
VARIANTS = {"conv_oc.cl": ({"OC": 4}, {"OC": 8}),
            "matmul_rows.cl": ({"VEC": 1, "ROWS": 1}, {"VEC": 8, "ROWS": 2})}


def kernel_source(name: str) -> str:
    """The OpenCL C of ``kernels/<name>``."""
    return (files(__package__) / "kernels" / name).read_text()


def op_defines() -> dict[str, int]:
    """``-D`` values of the op codes the kernels compare with: one table in Python
    (:data:`~coexec.layers.UNARY_MODES`, :data:`~coexec.layers.BINARY_OPS`), never literals."""
    return {**{f"UNARY_{k.upper()}": v for k, v in UNARY_MODES.items()},
            **{f"BINARY_{k.upper()}": v for k, v in BINARY_OPS.items()}}


def build_programs(cl, ctx) -> dict[str, Any]:
    """Build every kernel; ``{kernel name: its program}``."""
    defines = op_defines()

    def build(source: str, extra: dict[str, int]):
        opts = [f"-D{k}={v}" for k, v in {**defines, **extra}.items()]
        try:
            prog = cl.Program(ctx, source).build(options=opts)
        except cl.RuntimeError as e:
            raise RuntimeUnavailable(f"OpenCL kernel build failed:\n{e}") from None
        return {k.function_name: prog for k in prog.all_kernels()}

    programs = build("\n".join(kernel_source(s) for s in BASE_SOURCES), {})
    for source, variants in VARIANTS.items():
        for extra in variants:
            programs.update(build(kernel_source(source), extra))
    return programs


# a gate gives up after this many polls of its release counter (seconds on a CPU device):
# a host that died mid-run leaves the device spinning this long at most, never for ever
GATE_SPINS = 2_000_000_000


class OclExecutor:
    """OpenCL side: SVM buffers, conv/linear kernels, flag signalling."""

    def __init__(self, cores: Sequence[int] | None = None, require_svm: bool = True) -> None:
        """The first OpenCL device with fine-grained SVM buffers (or the one whose device or
        platform name contains ``$COEXEC_OPENCL_DEVICE``). ``require_svm=False`` accepts a
        device without them, for running kernels on plain buffers (``buffer``): the kernel
        check of another machine's device; co-execution needs the shared memory."""
        try:
            import pyopencl as cl
        except ImportError:
            raise RuntimeUnavailable("the OpenCL runtime needs pyopencl, which is not installed: "
                                     "pip install 'oplat[coexec]'") from None
        self.cl = cl
        if cores:
            # PoCL's CPU device: one worker thread per core it may use (read at platform init)
            os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", str(len(cores)))
        with pinned(cores):  # device worker threads inherit this
            try:
                platforms = cl.get_platforms()
            except cl.Error:
                platforms = []
            devices = [d for p in platforms for d in p.get_devices()]
            want = os.environ.get("COEXEC_OPENCL_DEVICE", "").lower()
            if want:
                devices = [d for d in devices if want in f"{d.name} {d.platform.name}".lower()]
            if not devices:
                raise RuntimeUnavailable("no OpenCL device" + (f" matching {want!r}" if want else "")
                                         + " (install pocl-opencl-icd, or run with --cpu-only)")
            fine = cl.device_svm_capabilities.FINE_GRAIN_BUFFER
            dev = next((d for d in devices if getattr(d, "svm_capabilities", 0) & fine), devices[0])
            caps = getattr(dev, "svm_capabilities", 0)
            self.fine_svm = bool(caps & fine)
            if require_svm and not self.fine_svm:
                raise RuntimeUnavailable(f"{dev.name}: no fine-grained SVM buffers")
            self.device = dev
            self.ctx = cl.Context([dev])
            self.queue = cl.CommandQueue(self.ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)
            self.programs = build_programs(cl, self.ctx)
            # one kernel object each: retrieving from the program creates a new kernel every time
            self._shared = {name: self.kernel(name) for name in (
                "conv2d_nchw", "conv2d_oc8", "conv2d_oc4", "conv_v8", "conv1x1_v8", "linear16", "pad_chw",
                "dwconv", "pool2d", "global_avg", "binary", "unary", "softmax_rows", "layernorm_rows", "matmul_rows1",
                "matmul_rows8", "transpose6")}
            self.k_flag = self.kernel("set_flag")
            self.k_wait_go = self.kernel("wait_go")
            if self.fine_svm:
                self._warm()
        self.atomics = bool(caps & cl.device_svm_capabilities.ATOMICS)

    def kernel(self, name: str):
        """A new kernel object of the kernel called ``name``."""
        return self.cl.Kernel(self.programs[name], name)

    def _warm(self) -> None:
        f = self.svm((1,), np.int32)
        self.signal(f, 0)
        self.queue.finish()

    def _mem(self, a):
        """A kernel argument for ``a``: an SVM array, or a plain buffer as it is."""
        return a if isinstance(a, self.cl.MemoryObjectHolder) else self.cl.SVM(a)

    def buffer(self, a: np.ndarray):
        """A plain device buffer holding a copy of ``a`` (devices without fine-grained SVM)."""
        mf = self.cl.mem_flags
        return self.cl.Buffer(self.ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=np.ascontiguousarray(a))

    def svm(self, shape: Sequence[int], dtype=np.float32) -> np.ndarray:
        """A host-visible numpy array in fine-grained SVM."""
        flags = self.cl.svm_mem_flags.READ_WRITE | self.cl.svm_mem_flags.SVM_FINE_GRAIN_BUFFER
        return self.cl.svm_empty(self.ctx, flags, tuple(shape), dtype)

    def padded_buffer(self, x_shape: Sequence[int], pad: int) -> np.ndarray:
        """A zeroed SVM buffer in the padded layout ``conv_v8`` reads (see :func:`padded_dims`)."""
        c, h, w = x_shape[-3:]
        hp, wp = padded_dims(h, w, pad)
        buf = self.svm((c * hp * wp + 16,))
        buf[...] = 0
        return buf

    def _pad_call(self, x, xpad, x_shape: Sequence[int], pad: int) -> tuple[str, tuple, tuple[int, ...]]:
        c, h, w = x_shape[-3:]
        hp, wp = padded_dims(h, w, pad)
        return "pad_chw", (self._mem(x), self._mem(xpad), np.int32(h), np.int32(w), np.int32(pad), np.int32(hp),
                           np.int32(wp)), (wp, hp, c)

    def _layer_call(self, layer: LayerSpec, x, w, b, y, c0: int, c1: int, x_shape: Sequence[int],
                    xpad=None) -> tuple[str, tuple, tuple[int, ...]]:
        """Kernel name, arguments and global size computing channels [c0, c1) of ``layer``."""
        clamp = (np.float32(layer.lo), np.float32(layer.hi))
        if layer.kind in CHANNELWISE:
            return self._other_call(layer, x, w, b, y, c0, c1, x_shape)
        if layer.kind == "linear":
            if x_shape[-1] % 16:
                raise RuntimeUnavailable(f"linear input size {x_shape[-1]} is not a multiple of 16")
            return "linear16", (self._mem(x), self._mem(w), self._mem(b), self._mem(y), np.int32(x_shape[-1] // 16),
                                np.int32(c0), *clamp), (c1 - c0,)
        c, h, wd = x_shape[-3:]
        _, ho, wo = layer.out_shape(x_shape)
        k = layer.w.shape[-1]
        if is_pointwise(layer) and (c1 - c0) % 4 == 0:
            return "conv1x1_v8", (self._mem(x), self._mem(w), self._mem(b), self._mem(y), np.int32(c), np.int32(h * wd),
                                  np.int32(layer.out_channels), np.int32(c0), *clamp), ((h * wd + 7) // 8, 1,
                                                                                        (c1 - c0) // 4)
        if xpad is not None and layer.stride == 1 and (c1 - c0) % 4 == 0:
            hp, wp = padded_dims(h, wd, layer.pad)
            return "conv_v8", (self._mem(xpad), self._mem(w), self._mem(b), self._mem(y), np.int32(c), np.int32(hp),
                               np.int32(wp), np.int32(layer.out_channels), np.int32(ho), np.int32(wo),
                               np.int32(k), np.int32(c0), *clamp), ((wo + 7) // 8, ho, (c1 - c0) // 4)
        block = 8 if (c1 - c0) % 8 == 0 else 4 if (c1 - c0) % 4 == 0 else 1
        return {8: "conv2d_oc8", 4: "conv2d_oc4", 1: "conv2d_nchw"}[block], (
            self._mem(x), self._mem(w), self._mem(b), self._mem(y), np.int32(c), np.int32(h), np.int32(wd),
            np.int32(layer.out_channels), np.int32(ho), np.int32(wo), np.int32(k), np.int32(layer.stride),
            np.int32(layer.pad), np.int32(c0), *clamp), (wo, ho, (c1 - c0) // block)

    def _other_call(self, layer: LayerSpec, x, w, b, y, c0: int, c1: int,
                    x_shape: Sequence[int]) -> tuple[str, tuple, tuple[int, ...]]:
        """The kernel call of the kinds other than dense conv and linear (channels [c0, c1))."""
        kind, n = layer.kind, c1 - c0
        clamp = (np.float32(layer.lo), np.float32(layer.hi))
        inner = inner_size(layer, x_shape)
        if kind in ("dwconv", "maxpool", "avgpool"):
            _, h, wd = x_shape[-3:]
            _, ho, wo = layer.out_shape(x_shape)
            geo = (np.int32(h), np.int32(wd), np.int32(ho), np.int32(wo))
            if kind == "dwconv":
                return "dwconv", (self._mem(x), self._mem(w), self._mem(b), self._mem(y), *geo, np.int32(layer.w.shape[-1]),
                                  np.int32(layer.stride), np.int32(layer.pad), np.int32(c0), *clamp), (wo, ho, n)
            return "pool2d", (self._mem(x), self._mem(y), *geo, np.int32(layer.k), np.int32(layer.stride),
                              np.int32(layer.pad), np.int32(c0), np.int32(kind == "avgpool")), (wo, ho, n)
        if kind == "gap":
            return "global_avg", (self._mem(x), self._mem(y), np.int32(inner), np.int32(c0)), (n,)
        if kind == "transpose":  # whole tensors only (no channel range)
            dims, strides = transpose_args(x_shape, layer.perm)
            return "transpose6", (self._mem(x), self._mem(y), *(np.int32(d) for d in dims[1:]),
                                  *(np.int32(t) for t in strides)), (int(np.prod(x_shape)),)
        if kind in BINARY_OPS:
            total = int(np.prod(x_shape))
            if layer.mode == BROADCAST["last"]:
                inner_b, outer_b = 1, int(x_shape[-1])
            elif layer.mode == BROADCAST["scalar"]:
                inner_b, outer_b = 1, 1
            else:  # the second operand's size says which
                inner_b, outer_b = (1, total) if elements(w) == total else (inner, int(x_shape[0]))
            return "binary", (self._mem(x), self._mem(w), self._mem(y), np.int32(inner_b), np.int32(outer_b),
                              np.int32(c0 * inner), np.int32(BINARY_OPS[kind]), *clamp), (n * inner,)
        if kind == "unary":
            return "unary", (self._mem(x), self._mem(y), np.int32(c0 * inner), np.int32(layer.mode), np.float32(layer.alpha),
                             np.float32(layer.beta), *clamp), (n * inner,)
        if kind == "softmax":
            return "softmax_rows", (self._mem(x), self._mem(y), np.int32(inner), np.int32(c0)), (n,)
        if kind == "matmul":
            m, kk, cols = int(x_shape[-2]) if len(x_shape) > 1 else 1, inner, layer.cols
            batched = elements(w) != kk * cols  # one [K, cols] matrix per batch, not weights
            args = (self._mem(x), self._mem(w), self._mem(b), self._mem(y), np.int32(m), np.int32(kk), np.int32(cols),
                    np.int32(kk * cols if batched else 0), np.int32(elements(b) == cols), np.int32(c0))
            if cols % 8 == 0 and (not batched or (m % 2 == 0 and c0 % 2 == 0)):  # no pair straddles a batch
                return "matmul_rows8", (*args, np.int32(c1), *clamp), (cols // 8, (n + 1) // 2)
            return "matmul_rows1", (*args, np.int32(c1), *clamp), (cols, n)
        if kind == "layernorm":
            return "layernorm_rows", (self._mem(x), self._mem(w), self._mem(b), self._mem(y), np.int32(inner), np.int32(c0),
                                      np.float32(layer.alpha)), (n,)
        raise RuntimeUnavailable(f"no OpenCL kernel for layer kind {kind!r}")

    def run_buffers(self, layer: LayerSpec, x: np.ndarray, runs: int = 1) -> tuple[np.ndarray, float]:
        """Run ``layer`` whole on plain device buffers (no SVM: any OpenCL device) ``runs``
        times; its output and the median time of its kernels (device events, the padded
        copy included)."""
        xb, wb, bb = self.buffer(x), self.buffer(layer.w), self.buffer(layer.b)
        y = np.full(layer.out_shape(x.shape), np.nan, np.float32)
        yb = self.buffer(y)
        xpad, calls = None, []
        if wants_padded_input(layer):
            hp, wp = padded_dims(x.shape[-2], x.shape[-1], layer.pad)
            xpad = self.buffer(np.zeros(x.shape[-3] * hp * wp + 16, np.float32))
            calls.append(self._pad_call(xb, xpad, x.shape, layer.pad))
        calls.append(self._layer_call(layer, xb, wb, bb, yb, 0, layer.out_channels, x.shape, xpad))
        times = []
        for _ in range(max(runs, 1)):
            evs = [self._enqueue_call(c) for c in calls]
            evs[-1].wait()
            times.append((evs[-1].profile.end - evs[0].profile.start) * 1e-6)
        self.cl.enqueue_copy(self.queue, y, yb).wait()
        return y, float(np.median(times))

    def _enqueue_call(self, call: tuple[str, tuple, tuple[int, ...]]):
        name, args, size = call
        kern = self._shared[name]
        kern.set_args(*args)
        return self.cl.enqueue_nd_range_kernel(self.queue, kern, size, None)

    def enqueue_pad(self, x, xpad, x_shape: Sequence[int], pad: int):
        """Enqueue the device-side copy of CHW ``x`` into ``xpad`` (no host sync: the
        in-order queue runs it after ``x``'s producer and before the conv reading it)."""
        return self._enqueue_call(self._pad_call(x, xpad, x_shape, pad))

    def enqueue(self, layer: LayerSpec, x, w, b, y, c0: int, c1: int, x_shape: Sequence[int], xpad=None):
        """Compute output channels [c0, c1) of ``layer`` into ``y`` (all SVM arrays)."""
        if c1 <= c0:
            return None
        return self._enqueue_call(self._layer_call(layer, x, w, b, y, c0, c1, x_shape, xpad))

    def signal(self, flag: np.ndarray, value: int):
        """Enqueue the trailing kernel that stores ``value`` into ``flag`` when work before it is done."""
        self.k_flag.set_args(self.cl.SVM(flag), np.int32(value))
        return self.cl.enqueue_nd_range_kernel(self.queue, self.k_flag, (1,), None)

    def prepare(self, layer: LayerSpec, x, w, b, y, c0: int, c1: int, x_shape: Sequence[int], xpad=None,
                flag: np.ndarray | None = None, value: int = 0,
                gate: tuple[np.ndarray, int, np.ndarray] | None = None) -> "Launch":
        """The launch of channels [c0, c1) of ``layer`` (after the padded copy when ``xpad``
        is given; followed by storing ``value`` into ``flag`` when given) with every kernel
        argument set now: replaying it costs one enqueue per kernel and no argument setting
        (setting arguments through pyopencl costs ~20 us per call, more than the enqueue).
        ``gate=(go, need, timed_out)``: the launch first waits on the device until
        ``go[0] >= need`` (:data:`GATE_SPINS` at most)."""
        calls = []
        if gate is not None:
            go, need, timed_out = gate
            calls.append(("gate", (self.cl.SVM(go), np.int32(need), np.int32(GATE_SPINS), self.cl.SVM(timed_out)),
                          (1,)))
        if xpad is not None and wants_padded_input(layer):
            calls.append(self._pad_call(x, xpad, x_shape, layer.pad))
        if c1 > c0:
            calls.append(self._layer_call(layer, x, w, b, y, c0, c1, x_shape, xpad))
        main = len(calls) - 1
        if flag is not None:
            calls.append(("set_flag", (self.cl.SVM(flag), np.int32(value)), (1,)))
        items = []
        for name, args, size in calls:
            kern = self.kernel(name)
            kern.set_args(*args)
            items.append((kern, size))
        return Launch(self.cl, self.queue, items, main)

    def flush(self) -> None:
        self.queue.flush()


class Launch:
    """Kernels with their arguments already set, enqueued in order by :meth:`enqueue`."""

    def __init__(self, cl, queue, items: list[tuple[Any, tuple[int, ...]]], main: int) -> None:
        self.cl, self.queue, self.items, self.main = cl, queue, items, main

    def enqueue(self):
        """Enqueue every kernel (non-blocking); returns the event of the layer's kernel."""
        enq, q = self.cl.enqueue_nd_range_kernel, self.queue
        evs = [enq(q, k, size, None) for k, size in self.items]
        return evs[self.main] if self.main >= 0 else None
