"""Device facts: identity, CPU clusters, GPU, thermal and battery state.

Paths the phone does not expose (or SELinux hides) are recorded as ``"unreadable"``,
never raised: facts are stored with every result and a missing GPU clock must not stop
a benchmark.
"""

from __future__ import annotations

import re
import time
from typing import Any

from .adb import Device

UNREADABLE = "unreadable"
PROPS = {"model": "ro.product.model", "manufacturer": "ro.product.manufacturer", "board": "ro.board.platform",
         "soc_model": "ro.soc.model", "hardware": "ro.hardware", "fingerprint": "ro.build.fingerprint",
         "sdk": "ro.build.version.sdk", "abi": "ro.product.cpu.abi"}
CLUSTER_NAMES = {1: ["cpu"], 2: ["small", "large"], 3: ["small", "med", "large"]}
GPU_PATHS = {
    "adreno": ("/sys/class/kgsl/kgsl-3d0/gpu_model", "/sys/class/kgsl/kgsl-3d0/gpuclk",
               "/sys/class/kgsl/kgsl-3d0/max_gpuclk"),
    "mali": ("/sys/class/misc/mali0/device/gpuinfo", "/sys/class/misc/mali0/device/devfreq/cur_freq",
             "/sys/class/misc/mali0/device/devfreq/max_freq"),
}


def _int(s: str | None) -> int | str:
    try:
        return int(str(s).strip())
    except (TypeError, ValueError):
        return UNREADABLE


def _read_many(dev: Device, paths: list[str]) -> dict[str, str | None]:
    """Read many small files in one shell call (each file's content after a marker)."""
    script = 'i=0; for f in "$@"; do echo "@@@$i"; cat "$f" 2>/dev/null; i=$((i+1)); done'
    r = dev.shell(["sh", "-c", script, "sh", *paths])
    out: dict[str, str | None] = {p: None for p in paths}
    cur = None
    buf: list[str] = []
    for line in r.stdout.splitlines() + ["@@@end"]:
        if line.startswith("@@@"):
            if cur is not None and cur < len(paths):
                out[paths[cur]] = "\n".join(buf) if buf else None
            cur, buf = (int(line[3:]) if line[3:].isdigit() else len(paths)), []
        else:
            buf.append(line)
    return out


def cpu_clusters(dev: Device) -> list[dict[str, Any]]:
    """CPU clusters from cpufreq: cores, min/max/cur kHz, governor and the taskset mask."""
    possible = dev.read_text("/sys/devices/system/cpu/possible") or ""
    m = re.match(r"\s*(\d+)-(\d+)", possible)
    n = int(m.group(2)) + 1 if m else 8
    base = "/sys/devices/system/cpu/cpu{}/cpufreq/{}"
    names = ("related_cpus", "cpuinfo_max_freq", "cpuinfo_min_freq", "scaling_cur_freq", "scaling_governor")
    paths = [base.format(c, f) for c in range(n) for f in names]
    got = _read_many(dev, paths)
    clusters: dict[tuple[int, ...], dict[str, Any]] = {}
    for c in range(n):
        rel = got[base.format(c, "related_cpus")]
        cpus = tuple(int(x) for x in rel.split()) if rel else (c,)
        if cpus in clusters:
            continue
        clusters[cpus] = {"cpus": list(cpus), "max_freq_khz": _int(got[base.format(c, "cpuinfo_max_freq")]),
                          "min_freq_khz": _int(got[base.format(c, "cpuinfo_min_freq")]),
                          "cur_freq_khz": _int(got[base.format(c, "scaling_cur_freq")]),
                          "governor": (got[base.format(c, "scaling_governor")] or UNREADABLE).strip(),
                          "mask": format(sum(1 << x for x in cpus), "x")}
    out = sorted(clusters.values(), key=lambda d: (d["max_freq_khz"] if isinstance(d["max_freq_khz"], int) else 0))
    # slowest to fastest; more than three clusters get distinct names c0, c1, ...
    names = CLUSTER_NAMES.get(len(out)) or [f"c{i}" for i in range(len(out))]
    for d, name in zip(out, names):
        d["name"] = name
    return out


def thermal(dev: Device) -> dict[str, Any]:
    """Thermal zones (type and °C) and the thermal service status."""
    r = dev.shell(["sh", "-c", 'for z in /sys/class/thermal/thermal_zone*; do echo "$(cat $z/type 2>/dev/null)'
                                ' $(cat $z/temp 2>/dev/null)"; done'])
    zones = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            v = int(parts[1])
            zones[parts[0]] = v / 1000.0 if abs(v) > 1000 else float(v)
    status: Any = UNREADABLE
    ts = dev.shell(["dumpsys", "thermalservice"])
    m = re.search(r"Thermal Status:\s*(\d+)", ts.stdout)
    if ts.returncode == 0 and m:
        status = int(m.group(1))
    return {"zones_c": zones, "status": status}


def battery(dev: Device) -> dict[str, Any]:
    """Level, temperature and charging state."""
    got = _read_many(dev, ["/sys/class/power_supply/battery/capacity", "/sys/class/power_supply/battery/temp",
                           "/sys/class/power_supply/battery/status"])
    temp = _int(got["/sys/class/power_supply/battery/temp"])
    status = (got["/sys/class/power_supply/battery/status"] or UNREADABLE).strip()
    return {"level": _int(got["/sys/class/power_supply/battery/capacity"]),
            "temp_c": temp / 10.0 if isinstance(temp, int) else temp,
            "status": status, "charging": status in ("Charging", "Full")}


def gpu(dev: Device) -> dict[str, Any]:
    """GPU model and clock where readable (Adreno kgsl, Mali devfreq)."""
    for family, (model_p, cur_p, max_p) in GPU_PATHS.items():
        got = _read_many(dev, [model_p, cur_p, max_p])
        if got[model_p] or got[cur_p]:
            return {"family": family, "model": (got[model_p] or UNREADABLE).strip(),
                    "cur_freq_hz": _int(got[cur_p]), "max_freq_hz": _int(got[max_p])}
    return {"family": UNREADABLE, "model": UNREADABLE}


def device_facts(dev: Device) -> dict[str, Any]:
    """Everything above plus getprop identity and airplane mode, stamped with the time."""
    props = {k: dev.getprop(v) for k, v in PROPS.items()}
    soc = props.get("soc_model") or props.get("board") or props.get("hardware") or UNREADABLE
    air = dev.shell(["settings", "get", "global", "airplane_mode_on"])
    return {"serial": dev.serial, "model": props["model"] or UNREADABLE, "manufacturer": props["manufacturer"],
            "soc": soc, "board": props["board"], "fingerprint": props["fingerprint"], "sdk": props["sdk"],
            "abi": props["abi"], "cpu_clusters": cpu_clusters(dev), "gpu": gpu(dev), "thermal": thermal(dev),
            "battery": battery(dev),
            "airplane_mode": air.stdout.strip() == "1" if air.returncode == 0 else UNREADABLE,
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def core_mask(facts: dict[str, Any], cores: str) -> str:
    """taskset mask for a cluster name (``large``, ``med``, ``small``), a core-set name as in
    the profiles (``1large``, ``2med``, ``1large2med``: that many cores of each cluster,
    fastest first) or a hex mask."""
    clusters = {c["name"]: c for c in facts["cpu_clusters"]}
    if cores in clusters:
        return clusters[cores]["mask"]
    parts = re.findall(r"(\d+)(large|med|small)", cores)
    if parts and "".join(f"{n}{k}" for n, k in parts) == cores:
        mask = 0
        for n, k in parts:
            if k not in clusters:
                raise ValueError(f"core set {cores!r}: this phone has no {k} cluster "
                                 f"(clusters: {', '.join(clusters)})")
            cpus = sorted(clusters[k]["cpus"], reverse=True)
            if int(n) > len(cpus):
                raise ValueError(f"core set {cores!r}: the {k} cluster has {len(cpus)} cores")
            for c in cpus[:int(n)]:
                mask |= 1 << c
        return format(mask, "x")
    if re.fullmatch(r"(0x)?[0-9a-fA-F]+", cores):
        return cores.lower().removeprefix("0x")
    raise ValueError(f"--cores {cores!r}: not a cluster ({', '.join(clusters)}), core set (1large2med) or hex mask")
