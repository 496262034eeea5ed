"""An emulated phone for tests and demonstrations: a fake adb server speaking the adb host
protocol over a sandboxed folder, with a ``benchmark_model`` that runs models for real with
LiteRT on this machine (:mod:`.fake_adb`)."""

from .fake_adb import FakeAdbServer, install_fake_benchmark, make_phone

__all__ = ["FakeAdbServer", "install_fake_benchmark", "make_phone"]
