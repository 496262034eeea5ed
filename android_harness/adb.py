"""The adb layer: adbutils talking to an adb server (platform-tools or Debian's ``adb``).

The server is found through ``ANDROID_ADB_SERVER_HOST`` / ``ANDROID_ADB_SERVER_PORT``
(adbutils' convention; default 127.0.0.1:5037). Every call has a timeout; a dropped
transport is retried once after a reconnect; unauthorized, offline and vanished devices
raise :class:`DeviceError` with a one-line message. Shell commands are argv lists, each
argument quoted with :func:`shlex.quote`: nothing from a user ever reaches the device's
shell unquoted.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence, TypeVar

from oplat.errors import OplatError

try:
    import adbutils
except ImportError:  # the [phone] extra: said when a phone is first talked to
    adbutils = None

T = TypeVar("T")
DEFAULT_TIMEOUT = 60.0


class HarnessError(OplatError):
    """Anything the harness cannot do, with a one-line reason."""


class DeviceError(HarnessError):
    """The device is unauthorized, offline, gone, or the adb server is unreachable."""


class ShellError(HarnessError):
    """A device command exited non-zero."""

    def __init__(self, msg: str, returncode: int = 1, output: str = "") -> None:
        super().__init__(msg)
        self.returncode = returncode
        self.output = output


@dataclass
class ShellResult:
    """Exit code and output of one device command (shell protocol v2)."""

    returncode: int
    stdout: str
    stderr: str


def server_address() -> tuple[str, int]:
    """(host, port) of the adb server from the environment."""
    host = os.environ.get("ANDROID_ADB_SERVER_HOST", "127.0.0.1")
    try:
        port = int(os.environ.get("ANDROID_ADB_SERVER_PORT", "5037"))
    except ValueError:
        raise HarnessError(f"ANDROID_ADB_SERVER_PORT={os.environ['ANDROID_ADB_SERVER_PORT']!r} is not a port") from None
    return host, port


def client(timeout: float = 10.0) -> adbutils.AdbClient:
    """An adbutils client for the configured server."""
    if adbutils is None:
        raise HarnessError("talking to phones needs adbutils, which is not installed: pip install 'oplat[phone]'")
    host, port = server_address()
    return adbutils.AdbClient(host=host, port=port, socket_timeout=timeout)


def quote_argv(argv: Sequence[str | os.PathLike]) -> str:
    """One shell command line with every argument quoted."""
    return " ".join(shlex.quote(str(a)) for a in argv)


def list_devices(timeout: float = 10.0) -> list[dict[str, str]]:
    """``adb devices -l``: serial, state, model, product, device of every attached device."""
    try:
        infos = client(timeout).list(extended=True)
    except (adbutils.AdbError, OSError) as e:
        host, port = server_address()
        raise DeviceError(f"adb server at {host}:{port} unreachable ({e})") from None
    return [{"serial": i.serial, "state": i.state, "model": i.tags.get("model", "").replace("_", " "),
             "product": i.tags.get("product", ""), "device": i.tags.get("device", "")} for i in infos]


def _classify(serial: str, e: Exception) -> DeviceError:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    low = msg.lower()
    if "unauthorized" in low:
        return DeviceError(f"device {serial} is unauthorized: accept the USB debugging prompt on the phone")
    if "offline" in low:
        return DeviceError(f"device {serial} is offline: reconnect the cable or restart adb")
    if "not found" in low:
        return DeviceError(f"device {serial} not found (unplugged?)")
    return DeviceError(f"device {serial}: connection lost ({msg})")


class Device:
    """One phone over adb: shell with exit codes, checked push/pull, retry on drops."""

    def __init__(self, serial: str, timeout: float = DEFAULT_TIMEOUT, retry_wait: float = 1.0,
                 retries: int = 1) -> None:
        self.serial = serial
        self.timeout = timeout
        self.retry_wait = retry_wait
        self.retries = retries
        self._dev = client(timeout).device(serial=serial)

    def _call(self, fn: Callable[[], T]) -> T:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except (adbutils.AdbError, adbutils.AdbTimeout, OSError, ConnectionError, EOFError) as e:
                err = _classify(self.serial, e)
                if "unauthorized" in str(err) or "offline" in str(err):
                    raise err from None
                last = err
                if attempt < self.retries:
                    time.sleep(self.retry_wait)
                    self._dev = client(self.timeout).device(serial=self.serial)
        assert last is not None
        raise last

    def shell(self, argv: Sequence[str | os.PathLike], timeout: float | None = None, check: bool = False,
              env: dict[str, str] | None = None) -> ShellResult:
        """Run ``argv`` (each argument quoted) with shell protocol v2 exit codes."""
        cmd = quote_argv(argv)
        if env:
            cmd = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + cmd
        r = self._call(lambda: self._dev.shell2(cmd, timeout=timeout or self.timeout, v2=True))
        res = ShellResult(r.returncode, r.stdout, r.stderr)
        if check and res.returncode != 0:
            raise ShellError(f"`{cmd[:120]}` exited {res.returncode} on {self.serial}: "
                             f"{(res.stderr or res.stdout).strip().splitlines()[-1:] or ''}", res.returncode,
                             res.stdout + res.stderr)
        return res

    def read_text(self, path: str) -> str | None:
        """Contents of a device file, or None where unreadable."""
        r = self.shell(["cat", path])
        return r.stdout if r.returncode == 0 else None

    def getprop(self, name: str) -> str:
        return self.shell(["getprop", name]).stdout.strip()

    def sha256(self, remote: str) -> str | None:
        r = self.shell(["sha256sum", remote])
        return r.stdout.split()[0] if r.returncode == 0 and r.stdout.strip() else None

    def push(self, local: str | os.PathLike, remote: str, mode: int = 0o644, verify: bool = True) -> str:
        """Push a file; check its size and sha256 on the device. Returns the sha256."""
        local = Path(local)
        if not local.is_file():
            raise HarnessError(f"no such file to push: {local}")
        digest = hashlib.sha256(local.read_bytes()).hexdigest()
        self._call(lambda: self._dev.sync.push(str(local), remote, mode=mode))
        if verify:
            size = self._call(lambda: self._dev.sync.stat(remote)).size
            if size != local.stat().st_size:
                raise HarnessError(f"push of {local.name} to {self.serial}:{remote}: {size} of "
                                   f"{local.stat().st_size} bytes arrived")
            remote_digest = self.sha256(remote)
            if remote_digest is not None and remote_digest != digest:
                raise HarnessError(f"push of {local.name} to {self.serial}:{remote}: sha256 mismatch")
        return digest

    def push_cached(self, local: str | os.PathLike, remote: str, mode: int = 0o755) -> str:
        """Push only when the device's copy differs (checksum cache)."""
        digest = hashlib.sha256(Path(local).read_bytes()).hexdigest()
        if self.sha256(remote) == digest:
            return digest
        return self.push(local, remote, mode=mode)

    def pull(self, remote: str, out_dir: str | os.PathLike, name: str | None = None) -> Path:
        """Pull a device file into ``out_dir``; the local name never escapes that folder."""
        out_dir = Path(out_dir).resolve()
        target = safe_join(out_dir, name or PurePosixPath(remote).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._call(lambda: self._dev.sync.pull(remote, str(target)))
        return target


def safe_join(folder: Path, name: str) -> Path:
    """``folder/name`` if it stays inside ``folder`` (no ``..``, no absolute names)."""
    folder = folder.resolve()
    if not name or name in (".", "..") or "\x00" in name:
        raise HarnessError(f"refusing to write a pulled file named {name!r}")
    target = (folder / name).resolve()
    if target != folder and folder not in target.parents:
        raise HarnessError(f"refusing to write {name!r} outside {folder}")
    return target
