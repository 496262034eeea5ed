"""coexec: CPU/GPU co-execution: plan per-op splits of output channels (rows) between the
CPU and the GPU from two device profiles, rewrite the graph to match, and run it on both
processors at once.

Planning: :mod:`.cost` (per-unit costs from two profiles), :mod:`.planner` (the split
search), :mod:`.plan` (plans as data), :mod:`.split` (the rewritten ONNX graph).

Runtime: tensors live in fine-grained shared virtual memory (``svm_empty`` with
``SVM_FINE_GRAIN_BUFFER``): the OpenCL kernel writes its output channels, the CPU
executor writes the others into the same buffer, and nothing is copied. The OpenCL side
signals completion by an atomic store of a sequence number into an SVM flag (a tiny
trailing kernel); the CPU polls that flag (:mod:`.sync`: spin with bounded backoff, with a
timeout) instead of ``clFinish``/``clWaitForEvents``; the event-wait and finish paths stay
as baselines (``sync="event" | "finish"``). Executors are bound to their own cores: the
OpenCL device's worker threads (PoCL's pthread device here; any OpenCL GPU elsewhere) are
created while the process is pinned to the GPU core set (:mod:`.opencl`, kernels in
``kernels/*.cl``), and the CPU executor (:mod:`.cpu`) pins its thread to the CPU core set.
:mod:`.layers` describes single layers, :mod:`.corun` co-runs one, :mod:`.graph_runner`
runs a split model, :mod:`.probes` and :mod:`.calibration` measure what the planner
charges.
"""
