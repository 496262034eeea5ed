"""One policy for every file a command reads or writes.

Outputs are written to a temporary file or folder beside the target and renamed into
place, so a failed or interrupted command leaves the old output (or nothing) and never a
half-written one; the temporary is removed on failure. Replacing an existing output needs
``force``, and ``force`` only ever replaces a thing of the same kind (a profile folder, a
plan JSON, a .tflite, ...): never a folder of other files, the working directory or a
folder above it, a folder holding one of the command's inputs, or an input itself. Files
a replaced profile folder holds besides the profile (notes, say) are carried over.

Inputs are regular files only (FIFOs, devices and folders are refused in one line, before
anything is read) and have a size bound.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Iterable

from .errors import OplatError

MB = 1 << 20
# what a command reads whole into memory: far above any real file of the kind
MAX_CSV_BYTES = 256 * MB
MAX_JSON_BYTES = 64 * MB
MAX_MODEL_BYTES = 4096 * MB


class OutputError(OplatError):
    """An output that would replace something it must not, or an input that is not a regular file."""


# inputs ------------------------------------------------------------------------------
def regular_input(path: str | os.PathLike, what: str = "file", max_bytes: int | None = None) -> Path:
    """``path`` if it is a regular file of at most ``max_bytes``; an :class:`OutputError`
    in one line otherwise (missing, a folder, a FIFO or device, too large). Checked with
    ``stat`` only: nothing is opened, so a FIFO cannot block."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise OutputError(f"{what} not found: {p}") from None
    except OSError as e:
        raise OutputError(f"{what} {p}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{what} {p} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "device" if (
            stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) else "socket" if stat.S_ISSOCK(st.st_mode) else "special file"
        raise OutputError(f"{what} {p} is a {kind}, not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise OutputError(f"{what} {p} is {st.st_size / MB:.0f} MB, more than the {max_bytes / MB:.0f} MB "
                          "such a file can be")
    return p


def read_text_input(path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_CSV_BYTES) -> str:
    """The text of a regular input file (see :func:`regular_input`); undecodable bytes are
    an error in one line."""
    p = regular_input(path, what, max_bytes)
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise OutputError(f"{what} {p} is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise OutputError(f"{what} {p}: {e.strerror or e}") from None


# atomic writes -----------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _plain_mode(path: Path, folder: bool) -> None:
    """The mode a plain ``open``/``mkdir`` gives (mkstemp/mkdtemp make private ones)."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file beside it, synced and renamed
    into place; the temporary is removed if anything fails."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if p.is_file():  # a replaced file keeps its permissions
            os.chmod(tmp, stat.S_IMODE(p.stat().st_mode))
        else:
            _plain_mode(Path(tmp), folder=False)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


# what must never be replaced -----------------------------------------------------------
def _protected(target: Path, inputs: Iterable[str | os.PathLike]) -> str | None:
    """Why ``target`` may not be replaced whatever ``force`` says, or None."""
    t = target.absolute().resolve()
    try:
        cwd = Path.cwd().resolve()
    except FileNotFoundError:  # the working directory was removed under us: nothing to protect there
        cwd = None
    if cwd is not None and (t == cwd or t in cwd.parents):
        return "is the working directory or a folder above it"
    if t == Path(t.anchor) or t == Path.home().resolve():
        return "is a root or home folder"
    for i in inputs:
        ip = Path(i).absolute().resolve()
        if ip == t:
            return f"is an input of this command ({i})"
        if t in ip.parents:
            return f"holds an input of this command ({i})"
    return None


def check_output_file(path: str | os.PathLike, force: bool = False, kind: str = "file",
                      is_kind: Callable[[Path], bool] | None = None,
                      inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """``path`` if a file may be written there: refused when it is a folder, an input, or
    an existing file without ``force``; with ``force`` an existing file is replaced only
    when ``is_kind`` says it is a ``kind`` too."""
    p = Path(path)
    why = _protected(p, inputs)
    if why:
        raise OutputError(f"{p} {why}; write the {kind} elsewhere")
    if p.is_dir():
        raise OutputError(f"{p} is a folder; give a file name for the {kind}")
    if p.exists() or p.is_symlink():
        if not p.is_file():
            raise OutputError(f"{p} exists and is not a regular file; write the {kind} elsewhere")
        if not force:
            raise OutputError(f"{p} exists (--force replaces it)")
        if is_kind is not None and not is_kind(p):
            raise OutputError(f"{p} exists and is not a {kind}; --force replaces only a {kind}")
    return p


# what kind of file is there (for --force: replace only a thing of the same kind) ----------
def _head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def is_png(path: Path) -> bool:
    """A PNG image (its signature)."""
    return _head(path, 8) == b"\x89PNG\r\n\x1a\n"


def is_tflite_file(path: Path) -> bool:
    """A TFLite flatbuffer (identifier ``TFL3`` at byte 4)."""
    return _head(path, 8)[4:8] == b"TFL3"


def is_json_file(path: Path, key: str | None = None) -> bool:
    """A JSON object (with ``key`` when given)."""
    import json

    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return False
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and (key is None or key in data)


def is_onnx_file(path: Path) -> bool:
    """An ONNX model (a ModelProto with a graph; external data not read)."""
    try:
        import onnx

        if path.stat().st_size > MAX_MODEL_BYTES:
            return False
        m = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - anything unparsable is not an ONNX model
        return False
    return m.HasField("graph")


# profile folders ---------------------------------------------------------------------
def is_profile_folder(path: str | os.PathLike) -> bool:
    """True for a folder holding an oplat ``profile.json`` (a JSON object with a format)."""
    meta = Path(path) / "profile.json"
    try:
        if not meta.is_file() or meta.stat().st_size > MAX_JSON_BYTES:
            return False
        import json

        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "format" in data


def profile_files(path: str | os.PathLike) -> set[str]:
    """The names of the files a profile folder's ``profile.json`` owns (itself and the
    regressors it lists)."""
    import json

    try:
        meta = json.loads((Path(path) / "profile.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(meta, dict):
        return set()
    owned = {"profile.json"} | {f for f in (meta.get("models") or {}).values() if isinstance(f, str)}
    for m in (meta.get("blend") or {}).get("members", []) or []:
        owned |= {f for f in (m.get("models") or {}).values() if isinstance(f, str)}
    return {f for f in owned if "/" not in f and "\\" not in f and f not in ("", ".", "..")}


def check_output_folder(path: str | os.PathLike, force: bool = False, kind: str = "profile",
                        is_kind: Callable[[Path], bool] = is_profile_folder,
                        inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """``path`` if a ``kind`` folder may be written there: a new or empty folder, or (with
    ``force``) a folder that already holds a ``kind``; never a file, a folder of other
    files, the working directory or above it, or a folder holding an input."""
    p = Path(path)
    why = _protected(p, inputs)
    if why:
        raise OutputError(f"{p} {why}; choose a new folder for the {kind}")
    if p.exists() or p.is_symlink():
        if not p.is_dir():
            raise OutputError(f"{p} exists and is not a folder; choose a new folder for the {kind}")
        if is_kind(p):
            if not force:
                raise OutputError(f"{p} already holds a {kind} (--force replaces it)")
        elif any(p.iterdir()):
            raise OutputError(f"{p} is a folder of other files, not a {kind}; choose a new or empty folder")
    return p


def replace_folder(target: str | os.PathLike, fill: Callable[[Path], None],
                   is_kind: Callable[[Path], bool] = is_profile_folder,
                   owned: Callable[[Path], set[str]] = profile_files, kind: str = "profile") -> Path:
    """Write a folder atomically: ``fill`` writes the new contents into a temporary folder
    beside ``target``, which then takes ``target``'s place. An existing ``target`` must be
    empty or hold a ``kind`` (``is_kind``): the files it ``owned`` are replaced, any others
    are carried over into the new folder. On failure the temporary folder is removed and
    ``target`` is as it was."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not is_kind(target):
        raise OutputError(f"{target} is a folder of other files, not a {kind}; choose a new or empty folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        _plain_mode(tmp, folder=True)
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # the command made it, and nothing else is in it
        raise
    if not target.exists():
        os.rename(tmp, target)
        return target
    old_owned = owned(target)
    for entry in target.iterdir():  # what the old kind did not own stays
        if entry.name not in old_owned and not (tmp / entry.name).exists():
            os.rename(entry, tmp / entry.name)
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    os.rename(tmp, target)
    for name in old_owned:  # only the replaced thing's own files are deleted
        with contextlib.suppress(OSError):
            (old / name).unlink()
    with contextlib.suppress(OSError):
        old.rmdir()
    return target


__all__ = ["OutputError", "is_png", "is_tflite_file", "is_json_file", "is_onnx_file", "regular_input", "read_text_input", "atomic_write_bytes", "atomic_write_text",
           "check_output_file", "check_output_folder", "is_profile_folder", "profile_files", "replace_folder",
           "MAX_CSV_BYTES", "MAX_JSON_BYTES", "MAX_MODEL_BYTES"]
