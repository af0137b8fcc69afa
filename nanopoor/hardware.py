"""hardware detection (nvidia-smi and torch) and the run class a track gives it."""
from __future__ import annotations

from pathlib import Path

import os
import platform
import shutil
import subprocess
import sys

SMI_QUERY = "name,memory.total,driver_version,compute_cap"


def parse_smi(text: str) -> list[dict]:
    """rows of `nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader,nounits`."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            continue
        name, mem_mib, driver, cap = parts[:4]
        gpus.append({"name": name, "memory_bytes": int(float(mem_mib)) * 2**20 if mem_mib.replace(".", "").isdigit() else None,
                     "driver": driver, "capability": cap})
    return gpus


def query_smi(devices: str | None = None) -> str | None:
    """nvidia-smi's rows for every gpu, or for `devices` (a CUDA_VISIBLE_DEVICES value: the gpus
    the run could see, in that order)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    select = ["-i", devices] if devices and devices.strip() not in ("", "-1") else []
    try:
        out = subprocess.run([exe, *select, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def describe(smi_text: str | None, torch_facts: dict | None) -> dict:
    """merge what nvidia-smi and torch (as the record's process saw it) report.

    nvidia-smi is the primary source for the gpu list; torch fills in when it is missing
    (and says how many gpus the process could use)."""
    gpus = parse_smi(smi_text) if smi_text else []
    tf = torch_facts or {}
    if not gpus and tf.get("device_name"):
        gpus = [{"name": tf["device_name"], "memory_bytes": tf.get("memory_bytes"), "driver": None,
                 "capability": tf.get("capability")}] * int(tf.get("device_count", 1))
    return {
        "gpus": gpus,
        "gpu_count": len(gpus),
        "cuda": tf.get("cuda"),
        "torch": tf.get("version"),
        "triton": tf.get("triton"),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
    }


def label(hw: dict, used_gpus: int | None = None) -> str:
    """`1× Tesla T4`, `2× NVIDIA H100 80GB HBM3`, or `cpu`."""
    gpus = hw.get("gpus") or []
    n = used_gpus if used_gpus is not None else len(gpus)
    if not gpus or n == 0:
        return "cpu"
    names = sorted({g["name"] for g in gpus[:n]})
    return f"{n}× {' + '.join(names)}"


def classify(hw: dict, track: dict, used_gpus: int | None = None, device: str | None = None) -> tuple[str, str]:
    """(class, label): official only when the track names the hardware and the run matches it
    exactly (count, model and compute capability); any other gpu is unofficial; a cpu run is dev."""
    if device == "cpu" or not hw.get("gpus") or used_gpus == 0:
        return "dev", "cpu"
    lab = label(hw, used_gpus)
    n = used_gpus if used_gpus is not None else len(hw["gpus"])
    used = hw["gpus"][:n]
    want = track.get("official_gpu")
    if (want and n == track.get("official_gpu_count") and all(g["name"] == want for g in used)
            and all(str(g.get("capability")) == track.get("official_capability") for g in used)):
        return "official", lab
    return "unofficial", lab


def machine_id() -> str:
    """a short, stable name for this machine (hash of /etc/machine-id and the host name): a
    reproduction made on the same machine as the run it reproduces says so."""
    import hashlib
    import socket

    try:
        mid = Path("/etc/machine-id").read_text().strip()
    except OSError:
        mid = ""
    return hashlib.sha256(f"{mid}|{socket.gethostname()}".encode()).hexdigest()[:12]


def visible_gpus() -> list[str]:
    """the gpu ids this process may use: CUDA_VISIBLE_DEVICES when set, else every gpu
    nvidia-smi lists (0, 1, …); empty on a machine without one."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    return [str(i) for i in range(len(parse_smi(query_smi() or "")))]
