"""The co-execution runtime's errors."""

from __future__ import annotations

from oplat.errors import OplatError


class RuntimeUnavailable(OplatError):
    """No OpenCL device, no SVM, or a kernel that does not build."""


class SyncTimeout(OplatError):
    """A polled flag never arrived: the device failed or hung."""


__all__ = ["RuntimeUnavailable", "SyncTimeout"]
