"""What this machine's devices compute with: CPU flags, and the inference precision each device runs at.

OpenVINO's speed and numerics depend on the CPU: its CPU plugin computes in bf16 by default on CPUs with
``avx512_bf16`` or AMX, and in f32 elsewhere, so the same model gives different answers on different
machines unless the precision is chosen (``ModelSpec.inference_precision``). Figures are only
comparable with the flags and the precision beside them: the test command and the benchmarks print
both (``openarc devices``).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

from .spec import PRECISION_HINT, device_family, precision_hint

CPU_FLAGS_THAT_MATTER = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)
"""The x86 flags that decide which kernels OpenVINO's CPU plugin runs: AVX2 or AVX-512, int8 dot
products (VNNI), bf16 and f16 arithmetic, and AMX tiles."""

_VIRTUAL_DEVICES = {"AUTO", "HETERO", "MULTI", "BATCH"}


@functools.cache
def cpu_flags() -> tuple[str, ...]:
    """Those of ``CPU_FLAGS_THAT_MATTER`` this CPU has (empty where /proc/cpuinfo cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    line = next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")
    present = set(line.partition(":")[2].split())
    return tuple(flag for flag in CPU_FLAGS_THAT_MATTER if flag in present)


def cpu_summary() -> str:
    """One line for reports: the CPU's name and the flags that matter (``none`` when it has none)."""
    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return f"{name}; flags: {' '.join(cpu_flags()) or 'none of ' + ', '.join(CPU_FLAGS_THAT_MATTER)}"


def precision_name(element_type: Any) -> str:
    """OpenVINO's element type as OpenArc names precisions: ``f32``, ``bf16``, ``f16``."""
    return element_type.get_type_name() if hasattr(element_type, "get_type_name") else str(element_type)


@functools.cache
def effective_precision(device: str, hint: str | None) -> str | None:
    """The precision ``device`` computes in when asked for ``hint`` (``None``: its default).

    A one-operation model is compiled with the hint and the compiled model is asked: a CPU without
    bf16 or f16 arithmetic answers f32 for those hints, whatever was asked. Virtual devices (AUTO,
    HETERO, ...) pick a device per model and have no single answer: ``None``.
    """
    if device_family(device) in _VIRTUAL_DEVICES:
        return None
    import numpy as np
    import openvino as ov
    from openvino import opset13

    parameter = opset13.parameter([1, 8], ov.Type.f32)
    weights = opset13.constant(np.ones((8, 8), dtype=np.float32))
    model = ov.Model([opset13.matmul(parameter, weights, False, False)], [parameter], "precision-probe")
    try:
        compiled = ov.Core().compile_model(model, device, {PRECISION_HINT: hint} if hint else {})
        return precision_name(compiled.get_property(PRECISION_HINT))
    except RuntimeError:
        return None


def describe_devices() -> list[dict[str, Any]]:
    """Every device OpenVINO sees: its name, the precisions it supports, its default inference
    precision, and the one OpenArc's ``inference_precision = "auto"`` gives it."""
    import openvino as ov

    core = ov.Core()
    devices = []
    for device in core.available_devices:
        auto_hint = precision_hint(device)
        devices.append(
            {
                "device": device,
                "name": _property(core, device, "FULL_DEVICE_NAME"),
                "capabilities": _property(core, device, "OPTIMIZATION_CAPABILITIES"),
                "default_precision": effective_precision(device, None),
                "openarc_auto_precision": effective_precision(device, auto_hint),
            }
        )
    return devices


def _property(core: Any, device: str, name: str) -> Any:
    try:
        return core.get_property(device, name)
    except RuntimeError:
        return None


def main(argv: list[str] | None = None) -> int:
    """``openarc devices``: the CPU's flags and every device's inference precisions."""
    parser = argparse.ArgumentParser(
        prog="openarc devices",
        description="Show the devices OpenVINO sees and the precisions they compute in.",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document instead of text")
    args = parser.parse_args(argv)
    devices = describe_devices()
    if args.json:
        sys.stdout.write(json.dumps({"cpu": cpu_summary(), "devices": devices}, indent=2) + "\n")
        return 0
    lines = [f"CPU: {cpu_summary()}"]
    for device in devices:
        capabilities = ", ".join(device["capabilities"] or []) or "n/a"
        default, auto = device["default_precision"] or "n/a", device["openarc_auto_precision"] or "n/a"
        lines.append(
            f"device {device['device']} ({device['name']}): OpenVINO's default inference precision "
            f"{default}, OpenArc's auto {auto}; capabilities {capabilities}"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
