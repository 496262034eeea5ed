"""A fake adb server on 127.0.0.1 that speaks the adb host protocol and emulates phones.

Both the Debian ``adb`` client and adbutils talk to it: ``host:version`` (41),
``host:devices[-l]``, ``host:features``, ``host-serial:S:features|get-state``,
``host:tport:serial:S`` / ``host:transport:S`` / ``host:transport-any``, then ``shell:``
and ``shell,v2[,options]:`` (exit codes in v2 packets) and ``sync:`` (STAT, STA2/LST2,
SEND, RECV, DATA, DONE, QUIT, LIST).

Each emulated phone lives in a sandbox folder: absolute device paths (``/data``,
``/sys``, ``/sdcard``, ``/proc/...``) map into it, commands run with ``/bin/sh`` inside it,
with ``getprop``, ``taskset`` and ``dumpsys`` from the sandbox's ``bin/``. A pushed
``benchmark_model`` (see ``fake_benchmark_model.py``) runs the model for real with LiteRT.
Faults for tests: ``state`` (``unauthorized``, ``offline``), ``drop_after`` (the transport
drops after that many more shell commands) and ``drop_at`` (drops when the command count
reaches each of these); the device is then gone for ``gone_for`` seconds.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
FEATURES = "shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir,apex,abb,fixed_push_symlink_timestamp,abb_exec,remount_shell,track_app,sendrecv_v2_brotli_disabled"
_PATH_RE = re.compile(r"(?<![\w/.~-])/(data|sys|sdcard|storage|proc/cpuinfo|system/bin/benchmark_model)(?=/|\b)")


@dataclass
class FakePhone:
    """One emulated device."""

    serial: str
    root: Path
    props: dict[str, str]
    state: str = "device"
    drop_after: int | None = None
    drop_at: list[int] = field(default_factory=list)  # shell-command counts at which the transport drops
    gone_for: float = 0.0
    gone_until: float = 0.0
    commands: list[str] = field(default_factory=list)

    def available(self) -> bool:
        return time.time() >= self.gone_until

    def host_path(self, device_path: str) -> Path:
        return self.root / device_path.lstrip("/")

    def translate(self, cmd: str) -> str:
        return _PATH_RE.sub(lambda m: str(self.root) + "/" + m.group(1), cmd)


def make_phone(root: Path, serial: str = "FAKE0001", model: str = "Pixel 4", soc: str = "SM8150",
               clusters: tuple = ((0, 1, 2, 3), (4, 5, 6), (7,)),
               max_khz: tuple = (1785600, 2419200, 2841600)) -> FakePhone:
    """Create a sandbox phone: props, a cpufreq/thermal /sys tree, tools in bin/."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data" / "local" / "tmp").mkdir(parents=True, exist_ok=True)
    cpu = root / "sys" / "devices" / "system" / "cpu"
    for cl, fmax in zip(clusters, max_khz):
        for c in cl:
            d = cpu / f"cpu{c}" / "cpufreq"
            d.mkdir(parents=True, exist_ok=True)
            (d / "cpuinfo_max_freq").write_text(f"{fmax}\n")
            (d / "cpuinfo_min_freq").write_text("300000\n")
            (d / "scaling_cur_freq").write_text(f"{fmax // 2}\n")
            (d / "scaling_governor").write_text("schedutil\n")
            (d / "related_cpus").write_text(" ".join(map(str, cl)) + "\n")
    (cpu / "possible").write_text(f"0-{max(max(c) for c in clusters)}\n")
    for i, (typ, temp) in enumerate((("cpu-0-0-usr", 38500), ("gpuss-0-usr", 36100), ("battery", 29000))):
        z = root / "sys" / "class" / "thermal" / f"thermal_zone{i}"
        z.mkdir(parents=True, exist_ok=True)
        (z / "type").write_text(typ + "\n")
        (z / "temp").write_text(f"{temp}\n")
    kgsl = root / "sys" / "class" / "kgsl" / "kgsl-3d0"
    kgsl.mkdir(parents=True, exist_ok=True)
    (kgsl / "gpu_model").write_text("Adreno640v2\n")
    (kgsl / "gpuclk").write_text("585000000\n")
    (kgsl / "max_gpuclk").write_text("585000000\n")
    bat = root / "sys" / "class" / "power_supply" / "battery"
    bat.mkdir(parents=True, exist_ok=True)
    (bat / "capacity").write_text("87\n")
    (bat / "temp").write_text("290\n")
    (bat / "status").write_text("Discharging\n")
    props = {"ro.product.model": model, "ro.product.manufacturer": "Google", "ro.board.platform": "msmnile",
             "ro.soc.model": soc, "ro.build.fingerprint": "google/flame/flame:13/TP1A.221005.002/9012097:user/release-keys",
             "ro.build.version.sdk": "33", "ro.product.cpu.abi": "arm64-v8a", "ro.product.name": "flame",
             "ro.product.device": "flame"}
    (root / "props.json").write_text(json.dumps(props))
    (root / "settings.json").write_text(json.dumps({"global": {"airplane_mode_on": "0"}}))
    bindir = root / "bin"
    bindir.mkdir(exist_ok=True)
    py = sys.executable
    tools = {
        "getprop": f"""#!{py}
import json, sys, os
p = json.load(open(os.path.join(os.environ['FAKE_ROOT'], 'props.json')))
if len(sys.argv) > 1:
    print(p.get(sys.argv[1], ''))
else:
    for k, v in sorted(p.items()):
        print(f'[{{k}}]: [{{v}}]')
""",
        "taskset": f"""#!{py}
import os, sys
mask = sys.argv[1]
int(mask, 16)
os.execvp(sys.argv[2], sys.argv[2:])
""",
        "dumpsys": f"""#!{py}
import sys
if sys.argv[1:2] == ['thermalservice']:
    print('IsStatusOverride: false\\nThermalEventListeners:\\n\\tcallbacks: 1\\nThermalStatusListeners:\\n\\tcallbacks: 1\\nThermal Status: 0')
elif sys.argv[1:2] == ['battery']:
    print('Current Battery Service state:\\n  AC powered: false\\n  USB powered: true\\n  level: 87\\n  temperature: 290\\n  status: 2')
else:
    print('Can\\'t find service: ' + ' '.join(sys.argv[1:]), file=sys.stderr); sys.exit(1)
""",
        "settings": f"""#!{py}
import json, os, sys
s = json.load(open(os.path.join(os.environ['FAKE_ROOT'], 'settings.json')))
print(s.get(sys.argv[2], {{}}).get(sys.argv[3], 'null'))
""",
    }
    for name, text in tools.items():
        p = bindir / name
        p.write_text(text)
        p.chmod(0o755)
    return FakePhone(serial, root, props)


class FakeAdbServer:
    """Serve the adb host protocol on 127.0.0.1:<port> for a list of fake phones."""

    def __init__(self, phones: list[FakePhone], port: int = 0) -> None:
        self.phones = {p.serial: p for p in phones}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "FakeAdbServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    # -- protocol helpers ------------------------------------------------------------
    @staticmethod
    def _recv_exact(c: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = c.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("client closed")
            buf += chunk
        return buf

    def _request(self, c: socket.socket) -> str:
        n = int(self._recv_exact(c, 4), 16)
        return self._recv_exact(c, n).decode()

    @staticmethod
    def _okay(c: socket.socket, payload: str | None = None) -> None:
        c.sendall(b"OKAY" + (b"" if payload is None else f"{len(payload.encode()):04x}".encode() + payload.encode()))

    @staticmethod
    def _fail(c: socket.socket, msg: str) -> None:
        c.sendall(b"FAIL" + f"{len(msg.encode()):04x}".encode() + msg.encode())

    def _phone_for(self, c: socket.socket, serial: str | None) -> FakePhone | None:
        ready = [p for p in self.phones.values() if p.available()]
        if serial is None:
            if len(ready) != 1:
                self._fail(c, "more than one device/emulator" if ready else "no devices/emulators found")
                return None
            return ready[0]
        p = self.phones.get(serial)
        if p is None or not p.available():
            self._fail(c, f"device '{serial}' not found")
            return None
        if p.state == "unauthorized":
            self._fail(c, "device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
                          "Try 'adb kill-server' if that seems wrong.\nOtherwise check for a confirmation dialog on your device.")
            return None
        if p.state != "device":
            self._fail(c, f"device {p.state}")
            return None
        return p

    def _handle(self, c: socket.socket) -> None:
        try:
            with c:
                phone = None
                while True:
                    req = self._request(c)
                    self.requests.append(req)
                    if phone is None:
                        phone, done = self._host(c, req)
                        if done:
                            return
                        continue
                    self._local(c, phone, req)
                    return
        except (ConnectionError, OSError, ValueError):
            return

    def _host(self, c: socket.socket, req: str) -> tuple[FakePhone | None, bool]:
        if req == "host:version":
            self._okay(c, f"{41:04x}")
            return None, True
        if req in ("host:devices", "host:devices-l"):
            lines = []
            for p in self.phones.values():
                if not p.available():
                    continue
                if req.endswith("-l") and p.state == "device":
                    lines.append(f"{p.serial:<22} device product:{p.props['ro.product.name']} "
                                 f"model:{p.props['ro.product.model'].replace(' ', '_')} "
                                 f"device:{p.props['ro.product.device']} transport_id:1")
                else:
                    lines.append(f"{p.serial}\t{p.state}")
            self._okay(c, "".join(line + "\n" for line in lines))
            return None, True
        if req == "host:features":
            self._okay(c, FEATURES)
            return None, True
        if req == "host:kill":
            self._okay(c)
            return None, True
        m = re.fullmatch(r"host-serial:(.+):(features|get-state|get-serialno)", req)
        if m:
            p = self._phone_for(c, m.group(1))
            if p is not None:
                self._okay(c, {"features": FEATURES, "get-state": p.state, "get-serialno": p.serial}[m.group(2)])
            return None, True
        for prefix, tport in (("host:tport:serial:", True), ("host:transport:", False)):
            if req.startswith(prefix):
                p = self._phone_for(c, req[len(prefix):])
                if p is None:
                    return None, True
                self._okay(c)
                if tport:
                    c.sendall(struct.pack("<Q", 1))
                return p, False
        if req in ("host:transport-any", "host:tport:any"):
            p = self._phone_for(c, None)
            if p is None:
                return None, True
            self._okay(c)
            if req == "host:tport:any":
                c.sendall(struct.pack("<Q", 1))
            return p, False
        self._fail(c, f"unknown host service '{req}'")
        return None, True

    # -- local services ----------------------------------------------------------------
    def _local(self, c: socket.socket, p: FakePhone, req: str) -> None:
        if req.startswith("shell"):
            head, _, cmd = req.partition(":")
            if p.drop_at and len(p.commands) >= p.drop_at[0]:
                p.drop_at.pop(0)
                p.gone_until = time.time() + p.gone_for
                p.commands.append(f"<dropped before: {cmd}>")
                c.close()
                return
            if p.drop_after is not None:
                if p.drop_after <= 0:
                    p.gone_until = time.time() + p.gone_for
                    p.drop_after = None
                    c.close()
                    return
                p.drop_after -= 1
            p.commands.append(cmd)
            self._okay(c)
            self._shell(c, p, cmd, v2="v2" in head.split(","))
        elif req == "sync:":
            self._okay(c)
            self._sync(c, p)
        else:
            self._fail(c, f"closed: unknown service {req}")

    def _shell(self, c: socket.socket, p: FakePhone, cmd: str, v2: bool) -> None:
        env = {"PATH": f"{p.root / 'bin'}:{p.root / 'data' / 'local' / 'tmp'}:/usr/bin:/bin", "FAKE_ROOT": str(p.root),
               "HOME": str(p.root), "LANG": "C.UTF-8", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        proc = subprocess.run(["/bin/sh", "-c", p.translate(cmd or "true")], cwd=p.root, env=env,
                              capture_output=True, timeout=600)
        if v2:
            for pid, data in ((1, proc.stdout), (2, proc.stderr)):
                for i in range(0, len(data), 65536):
                    chunk = data[i:i + 65536]
                    c.sendall(bytes([pid]) + struct.pack("<I", len(chunk)) + chunk)
            c.sendall(bytes([3]) + struct.pack("<I", 1) + bytes([proc.returncode & 0xFF]))
        else:
            c.sendall(proc.stdout + proc.stderr)

    def _sync(self, c: socket.socket, p: FakePhone) -> None:
        while True:
            head = self._recv_exact(c, 8)
            cmd, n = head[:4], struct.unpack("<I", head[4:])[0]
            if cmd == b"QUIT":
                return
            arg = self._recv_exact(c, n).decode()
            if cmd == b"STAT":
                hp = p.host_path(arg)
                if hp.exists():
                    st = hp.stat()
                    c.sendall(b"STAT" + struct.pack("<III", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime)))
                else:
                    c.sendall(b"STAT" + struct.pack("<III", 0, 0, 0))
            elif cmd in (b"STA2", b"LST2"):
                hp = p.host_path(arg)
                if hp.exists():
                    st = hp.stat()
                    c.sendall(cmd + struct.pack("<IQQIIIIQqqq", 0, 0, st.st_ino, st.st_mode, st.st_nlink, 0, 0,
                                                st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime)))
                else:
                    c.sendall(cmd + struct.pack("<IQQIIIIQqqq", 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
            elif cmd == b"LIST":
                hp = p.host_path(arg)
                if hp.is_dir():
                    for e in sorted(hp.iterdir()):
                        st = e.stat()
                        name = e.name.encode()
                        c.sendall(b"DENT" + struct.pack("<IIII", st.st_mode, st.st_size & 0xFFFFFFFF,
                                                        int(st.st_mtime), len(name)) + name)
                c.sendall(b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))
            elif cmd == b"SEND":
                path, _, mode = arg.rpartition(",")
                hp = p.host_path(path)
                data = bytearray()
                while True:
                    h = self._recv_exact(c, 8)
                    k, m = h[:4], struct.unpack("<I", h[4:])[0]
                    if k == b"DATA":
                        data += self._recv_exact(c, m)
                    elif k == b"DONE":
                        break
                    else:
                        raise ValueError(f"unexpected {k!r} in SEND")
                try:
                    hp.parent.mkdir(parents=True, exist_ok=True)
                    hp.write_bytes(bytes(data))
                    hp.chmod(int(mode) & 0o777 if mode else 0o644)
                    c.sendall(b"OKAY" + struct.pack("<I", 0))
                except OSError as e:
                    msg = f"couldn't create file: {e.strerror}".encode()
                    c.sendall(b"FAIL" + struct.pack("<I", len(msg)) + msg)
            elif cmd == b"RECV":
                hp = p.host_path(arg)
                if not hp.is_file():
                    msg = b"No such file or directory"
                    c.sendall(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                    continue
                data = hp.read_bytes()
                for i in range(0, len(data), 65536):
                    chunk = data[i:i + 65536]
                    c.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                c.sendall(b"DONE" + struct.pack("<I", 0))
            else:
                msg = f"unknown sync command {cmd!r}".encode()
                c.sendall(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                return


def install_fake_benchmark(dest: Path) -> Path:
    """Copy the fake ``benchmark_model`` (runs LiteRT for real) to ``dest``, executable."""
    src = HERE / "fake_benchmark_model.py"
    text = src.read_text().replace("#!/usr/bin/env python3", f"#!{sys.executable}", 1)
    dest.write_text(text)
    dest.chmod(0o755)
    return dest


__all__ = ["FakeAdbServer", "FakePhone", "make_phone", "install_fake_benchmark"]
