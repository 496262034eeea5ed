"""Every OpenCL kernel of the runtime against onnxruntime on this machine's OpenCL device
(PoCL here), on plain buffers as on a device without SVM."""

import pytest

from coexec.errors import RuntimeUnavailable


def test_every_kernel_matches_onnxruntime_on_plain_buffers():
    from coexec.kernel_check import check_device, layers
    from coexec.opencl import OclExecutor

    try:
        ocl = OclExecutor(require_svm=False)
    except RuntimeUnavailable as e:
        pytest.fail(f"no OpenCL device to check the kernels on ({e}); install pocl-opencl-icd")
    res = check_device(ocl, runs=1)
    bad = {k: v for k, v in res["layers"].items() if not v["ok"]}
    assert not bad, bad
    assert res["summary"]["layers"] == len(layers()) >= 24
    # every kernel the runtime builds is exercised by some layer of the check
    names = " ".join(res["layers"])
    for kernel in ("conv_v8", "conv2d_oc8", "conv2d_oc4", "conv2d_nchw", "conv1x1_v8", "linear16"):
        assert kernel in names
