"""What the activation precision costs in quality: every model against itself in f32 with nothing dropped.

For each model, the reference is the model run in f32 with OpenVINO's dynamic quantization of activations
off (``DYNAMIC_QUANTIZATION_GROUP_SIZE = 0``): its own weights, computed as exactly as the runtime can.
Every other configuration of the same model (bf16, f16, f32 with dynamic quantization on, as OpenVINO
runs int4 and int8 weights by default on CPUs with VNNI or AMX) is compared with it, teacher-forced on
OpenArc's quality text (``adapters.export.quality``): mean and 99th-percentile KL, top-1 agreement.

Two shapes are measured, because the CPU runs them through different kernels: pieces of 128 tokens (as a
prompt's prefill) and pieces of 1 token (as decoding, where a server spends most steps). The figures
depend on the CPU: the report starts with its flags.

    python -m bench.precision_quality MODEL [MODEL ...] [--tokens 1200] [--format markdown]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from adapters.export.quality import (
    DEFAULT_CONTEXT,
    ReferenceRun,
    TeacherForcedModel,
    default_text,
    readable_ir,
    tokenize,
)
from adapters.openvino.devices import cpu_summary, effective_precision
from adapters.openvino.spec import precision_hint
from gateway.config import ServerConfig

logger = logging.getLogger(__name__)

EXACT = {"DYNAMIC_QUANTIZATION_GROUP_SIZE": 0}
"""No int8 quantization of activations in front of compressed weights: the reference."""
CONFIGURATIONS: dict[str, tuple[str, dict]] = {
    "f32": ("f32", {}),
    "bf16": ("bf16", {}),
    "f16": ("f16", {}),
    "bf16 no-dq": ("bf16", EXACT),
}
"""Name -> (inference precision, properties over the server's defaults); compared with f32 + ``EXACT``."""


def measure(model: Path, tokens: int, piece: int, names: list[str]) -> list[dict]:
    """Rows of figures for ``model`` at ``piece`` tokens per inference, on the first ``tokens`` tokens."""
    folder = readable_ir(model, ServerConfig().cache_path / "converted")
    ids = tokenize(folder, default_text())[:tokens]
    rows = []
    with tempfile.TemporaryDirectory(prefix="openarc-precision-") as scratch:
        reference = TeacherForcedModel(folder, piece=piece, precision="f32", properties=EXACT)
        run = ReferenceRun(reference, ids, DEFAULT_CONTEXT, Path(scratch))
        try:
            for name in names:
                precision, properties = CONFIGURATIONS[name]
                computed = effective_precision("CPU", precision_hint("CPU", precision))  # type: ignore[arg-type]
                try:
                    candidate = TeacherForcedModel(
                        folder, piece=piece, precision=precision, properties=properties
                    )
                except RuntimeError as exc:  # f16 on CPU: "object is not initialized" (openvino 2026.4.1)
                    logger.warning(
                        "%s at %s does not compile: %s", model.name, name, str(exc).splitlines()[-1]
                    )
                    continue
                figures = run.compare(candidate)
                rows.append(
                    {
                        "model": model.name,
                        "piece": piece,
                        "configuration": name,
                        "computed": computed,
                        "kl_mean": figures.kl_mean,
                        "kl_p99": figures.kl_p99,
                        "top1": figures.top1_agreement,
                        "positions": figures.positions,
                    }
                )
                logger.info("%s", rows[-1])
        finally:
            run.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    """Measure every model, piece size and configuration, and print the Markdown table."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.precision_quality", description=__doc__.split("\n")[0]
    )
    parser.add_argument("models", nargs="+", type=Path, help="IR folders or .gguf files")
    parser.add_argument("--tokens", type=int, default=1200, help="tokens of the quality text to score")
    parser.add_argument("--pieces", default="128,1", help="tokens per inference, comma-separated")
    parser.add_argument("--configurations", default=",".join(CONFIGURATIONS), help="names, comma-separated")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    names = [name.strip() for name in args.configurations.split(",")]
    lines = [
        f"Machine: {cpu_summary()}. Reference: each model in f32 with DYNAMIC_QUANTIZATION_GROUP_SIZE=0.",
        "",
        "| model | tokens a piece | configuration | computed in | KL mean | KL p99 | top-1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in args.models:
        for piece in (int(p) for p in args.pieces.split(",")):
            for row in measure(model, args.tokens, piece, names):
                lines.append(
                    f"| {row['model']} | {row['piece']} | {row['configuration']} | {row['computed']} | "
                    f"{row['kl_mean']:.5f} | {row['kl_p99']:.4f} | {row['top1']:.1%} |"
                )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
