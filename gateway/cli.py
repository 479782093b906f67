"""The ``openarc`` command: parse flags into a ``ServerConfig`` and start the server. Nothing else."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from adapters.openvino.model_files import MANIFEST, TASKS
from adapters.openvino.spec import INFERENCE_PRECISIONS, InferencePrecision, parse_precisions

from . import __version__
from .config import ConfigError, ModelSpec, SchedulerSettings, ServerConfig, load_config, with_defaults
from .logs import configure_logging

if TYPE_CHECKING:
    from adapters.export.optimum_intel import ExportOptions

logger = logging.getLogger("openarc")


# Commands run as ``python -m <module>`` in a child process, with parsers of their own: the command line
# imports none of their code (the benchmark is not part of the server).
_DELEGATED = {
    "bench": ("bench", "benchmark a server against the raw pipeline (see README)"),
    "devices": ("adapters.openvino.devices", "the CPU's flags and the precision each device computes in"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``openarc`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _DELEGATED:
        command = [sys.executable, "-m", _DELEGATED[argv[0]][0], *argv[1:]]
        return subprocess.run(command, check=False).returncode
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except ConfigError as exc:
        sys.stderr.write(f"openarc: error: {exc}\n")
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openarc", description="OpenAI-compatible server for OpenVINO models."
    )
    parser.add_argument("--version", action="version", version=f"openarc {__version__}")
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="serve models over the OpenAI API")
    serve.add_argument("--config", type=Path, help="TOML or JSON file with server and model settings")
    serve.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[ID=]SOURCE",
        help="an OpenVINO IR folder, a .gguf file or a hub id; repeatable (default: the demo model)",
    )
    serve.add_argument("--device", help="device for --model models (CPU, GPU, NPU, AUTO, ...; default CPU)")
    serve.add_argument(
        "--inference-precision",
        choices=INFERENCE_PRECISIONS,
        help="precision --model models compute in (default auto: f32 on CPU, the device's own elsewhere)",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--cache-dir", help="model and compiled-blob cache (default ~/.cache/openarc)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", choices=["text", "json"], help="json: one JSON object a line")
    serve.add_argument(
        "--log-prompts", action="store_true", default=None, help="log messages and generated text (debug)"
    )
    serve.add_argument(
        "--models-dir",
        action="append",
        dest="models_dirs",
        metavar="DIR",
        help="serve every export and .gguf file in DIR, loaded on first use; repeatable "
        "(default: the cache's exports/ and models/)",
    )
    serve.add_argument(
        "--keep-alive",
        metavar="DURATION",
        help="how long an idle model that was not preloaded stays loaded "
        "(default 5m; 0: unload at once, -1: never)",
    )
    serve.add_argument(
        "--max-loaded-memory",
        metavar="SIZE",
        help="memory the loaded models may take together "
        "(12GB, 8GiB, 75%%); idle models are unloaded to make room",
    )
    serve.add_argument("--max-loaded-models", type=int, metavar="N", help="most models loaded at once")
    serve.add_argument("--admin-key", help="require this bearer key on /admin (default: $OPENARC_ADMIN_KEY)")
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        dest="api_keys",
        metavar="KEY",
        help="require this key on every route but /health and /ready; repeatable (also $OPENARC_API_KEY, "
        "comma-separated)",
    )
    serve.add_argument("--api-key-file", type=Path, help="a file of API keys, one a line, # comments")
    serve.add_argument(
        "--shutdown-grace", type=float, metavar="SECONDS", help="time running requests get after SIGTERM"
    )
    serve.add_argument(
        "--no-chat-page",
        dest="chat_page",
        action="store_false",
        default=None,
        help="do not serve the chat page at /",
    )
    serve.set_defaults(
        run=_serve,
        admin_key=os.environ.get("OPENARC_ADMIN_KEY"),
        # One key, or several separated by commas.
        env_api_keys=[key for key in os.environ.get("OPENARC_API_KEY", "").split(",") if key.strip()],
    )

    models = commands.add_parser(
        "models", help="list the models a server would serve (configured, in its model folders), or does"
    )
    models.add_argument("--config", type=Path, help="also list this config file's models")
    models.add_argument("--cache-dir", help="model cache to scan (default ~/.cache/openarc)")
    models.add_argument("--models-dir", action="append", dest="models_dirs", metavar="DIR")
    models.add_argument("--url", help="list what a running server serves, with states and memory, instead")
    models.add_argument("--api-key", help="the running server's API key (default: $OPENARC_API_KEY)")
    models.add_argument("paths", nargs="*", type=Path, help="more model folders (or models) to list")
    models.set_defaults(run=_models)

    export = commands.add_parser(
        "export", help="export a model to OpenVINO IR ahead of time (needs [export])"
    )
    export.add_argument("source", help="Hugging Face model id, local transformers folder, or .gguf file")
    export.add_argument("output", nargs="?", type=Path, help="output folder (default: the cache's exports/)")
    export.add_argument(
        "--task",
        choices=TASKS,
        help="chat, embedding or rerank model (default: detected from config.json and modules.json)",
    )
    export.add_argument(
        "--preset",
        help="int4-awq-se (default for chat models), int4, int8 (naive) or fp16 (default for the others)",
    )
    export.add_argument("--weight-format", choices=["fp32", "fp16", "int8", "int4"])
    export.add_argument(
        "--sym", action=argparse.BooleanOptionalAction, help="symmetric quantization (--asym)"
    )
    export.add_argument("--asym", dest="sym", action="store_false", help=argparse.SUPPRESS)
    export.add_argument(
        "--group-size", type=int, help="int4 group size (a divisor is picked if it does not fit)"
    )
    export.add_argument("--ratio", type=float, help="int4: share of layers in int4, the rest int8")
    export.add_argument(
        "--awq", action=argparse.BooleanOptionalAction, help="activation-aware weight quantization"
    )
    export.add_argument("--scale-estimation", action=argparse.BooleanOptionalAction)
    export.add_argument("--gptq", action=argparse.BooleanOptionalAction)
    export.add_argument(
        "--dataset", help="calibration data: auto (offline), a local text file, or a dataset name"
    )
    export.add_argument("--num-samples", type=int, help="calibration samples")
    export.add_argument("--trust-remote-code", action="store_true")
    export.add_argument("--force", action="store_true", help="replace the output folder if it exists")
    export.add_argument("--cache-dir", help="where default outputs go (default ~/.cache/openarc)")
    export.add_argument(
        "--quality",
        action="store_true",
        help="also measure the export against the source (a GGUF itself; otherwise an fp16 export of it)",
    )
    export.add_argument(
        "--sweep",
        action="store_true",
        help="export the usual candidates into OUTPUT/<candidate>, compare them and recommend one",
    )
    export.add_argument("--candidates", help="--sweep: only these candidates (comma-separated names)")
    export.add_argument(
        "--kl-threshold",
        type=float,
        default=0.05,
        help="--sweep: recommend the fastest export whose mean KL from fp16 stays under this (default 0.05)",
    )
    export.add_argument("--text", type=Path, help="text for the quality figures (default: OpenArc's own)")
    export.add_argument("--format", choices=["text", "markdown", "json"], default="text", dest="form")
    export.add_argument("--repeats", type=int, default=3, help="--sweep: runs per speed measurement")
    export.add_argument(
        "--precision",
        default="auto",
        help="--sweep: inference precisions to measure each export at, comma-separated (auto, f32, bf16, "
        "f16; default auto: what the server would use)",
    )
    export.set_defaults(run=_export, sym=None)

    compare = commands.add_parser(
        "compare", help="compare exports of one model: size, speed, memory, quality (KL, PPL)"
    )
    compare.add_argument("models", nargs="+", type=Path, help="exports (or .gguf files) of the same model")
    compare.add_argument("--device", default="CPU")
    compare.add_argument("--reference", type=Path, help="the model others are compared with")
    compare.add_argument("--text", type=Path, help="text for the quality figures (default: OpenArc's own)")
    compare.add_argument("--format", choices=["text", "markdown", "json"], default="text", dest="form")
    compare.add_argument("--max-tokens", type=int, default=64, help="tokens generated per speed request")
    compare.add_argument("--repeats", type=int, default=3, help="runs per speed measurement (median)")
    compare.add_argument("--no-quality", dest="quality", action="store_false", help="speed and memory only")
    compare.add_argument("--kl-threshold", type=float, help="also recommend the fastest model under this KL")
    compare.add_argument(
        "--precision",
        default="auto",
        help="inference precisions to measure each model at, comma-separated (auto, f32, bf16, f16; "
        "default auto: what the server would use)",
    )
    compare.add_argument("--cache-dir", help="where GGUF conversions are cached (default ~/.cache/openarc)")
    compare.set_defaults(run=_compare)
    for name, (_, summary) in _DELEGATED.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def build_config(args: argparse.Namespace) -> ServerConfig:
    """The server config: file first, then CLI flags on top, then defaults and checks."""
    config = load_config(args.config)
    overrides = {
        name: getattr(args, name)
        for name in (
            "host",
            "port",
            "cache_dir",
            "log_level",
            "log_format",
            "log_prompts",
            "admin_key",
            "chat_page",
            "keep_alive",
            "max_loaded_memory",
            "max_loaded_models",
        )
        if getattr(args, name, None) is not None
    }
    if getattr(args, "models_dirs", None):
        overrides["models_dirs"] = [*(config.models_dirs or []), *args.models_dirs]
    if getattr(args, "shutdown_grace", None) is not None:
        overrides["shutdown_grace"] = args.shutdown_grace
    overrides["api_keys"] = _api_keys(config, args)
    # --device and --inference-precision apply to the --model models, or to every model when none is given.
    per_model = {
        name: getattr(args, name)
        for name in ("device", "inference_precision")
        if getattr(args, name, None) is not None
    }
    config = msgspec.structs.replace(config, **overrides)
    try:
        if args.model:
            models = list(config.models) + [_model_spec(entry, **per_model) for entry in args.model]
        else:
            models = [msgspec.structs.replace(m, **per_model) for m in with_defaults(config).models]
    except ValueError as exc:  # a model's own check (ModelSpec.__post_init__), such as two precisions
        raise ConfigError(str(exc)) from None
    return with_defaults(msgspec.structs.replace(config, models=models))


def _api_keys(config: ServerConfig, args: argparse.Namespace) -> list[str]:
    """All keys together: config file, its key file, --api-key, $OPENARC_API_KEY, --api-key-file."""
    from .auth import read_key_file  # imports Litestar: only for serve

    keys = list(config.api_keys)
    for path in (config.api_key_file, getattr(args, "api_key_file", None)):
        if path is not None:
            keys += read_key_file(Path(path))
    keys += getattr(args, "api_keys", []) + getattr(args, "env_api_keys", [])
    keys = [key.strip() for key in keys]
    if any(not key for key in keys):
        raise ConfigError("an API key is empty")
    return list(dict.fromkeys(keys))  # unique, in order


def _model_spec(entry: str, **settings: str) -> ModelSpec:
    model_id, sep, source = entry.partition("=")
    if not sep:
        source = entry
        model_id = Path(source).stem if Path(source).suffix == ".gguf" else Path(source.rstrip("/")).name
    if not model_id or not source:
        raise ConfigError(f"--model {entry!r}: expected ID=SOURCE or SOURCE")
    return ModelSpec(id=model_id, source=source, **settings)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .auth import exposure_warnings
    from .registry import ModelRegistry

    config = build_config(args)
    configure_logging(config.log_level, config.log_format, config.log_prompts)
    registry = ModelRegistry(config)
    registry.load_all()  # before binding the port: a bad model is a one-line error, not a traceback
    for warning in exposure_warnings(config):
        logger.warning("%s", warning)
    logger.info(
        "serving %s on http://%s:%d/v1%s",
        ", ".join(m.id for m in registry.models()),
        config.host,
        config.port,
        f" ({len(config.api_keys)} API keys)" if config.api_keys else "",
    )
    # uvicorn drains on SIGTERM (stops accepting, waits up to the grace period for running requests,
    # cancels the rest, runs the lifespan shutdown that stops the engines), then restores the previous
    # handler and raises the signal again. With the default handler that would kill the process with
    # -SIGTERM after a clean drain; this one lets the drained server exit 0.
    signal.signal(signal.SIGTERM, _drained)
    uvicorn.run(
        create_app(config, registry),
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        log_config=None,  # uvicorn's records go to the handler configure_logging installed
        timeout_graceful_shutdown=config.shutdown_grace,
    )
    return 0


def _drained(signum: int, _frame: object) -> None:
    logger.info("stopped by %s", signal.Signals(signum).name)


def _export(args: argparse.Namespace) -> int:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from adapters.export.optimum_intel import ExportError
    from adapters.export.quality import QualityError

    try:
        return _sweep(args) if args.sweep else _export_one(args)
    except ImportError as exc:
        raise ConfigError(
            f"openarc export needs the export extra (pip install 'openarc[export]'): {exc}"
        ) from exc
    except (ExportError, QualityError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc


def _export_one(args: argparse.Namespace) -> int:
    from adapters.export.optimum_intel import export_model

    options, preset = _export_options(args)
    output = args.output or _default_output(args, args.preset or options.weight_format)
    manifest = export_model(args.source, output, options, preset, force=args.force)
    for note in manifest["notes"]:
        sys.stderr.write(f"note: {note}\n")
    if args.quality:
        if options.task != "text-generation":
            raise ConfigError("--quality measures chat (text-generation) models only")
        sys.stdout.write(_quality_against_source(args, output, options.trust_remote_code) + "\n")
    sys.stdout.write(f"{output}\n")
    return 0


def _cache_path(args: argparse.Namespace) -> Path:
    """``--cache-dir``, else the server's default cache folder."""
    return Path(args.cache_dir).expanduser() if args.cache_dir else ServerConfig().cache_path


def _default_output(args: argparse.Namespace, suffix: str) -> Path:
    name = Path(args.source).stem if args.source.endswith(".gguf") else Path(args.source).name
    return _cache_path(args) / "exports" / f"{name}-{suffix}"


def _quality_against_source(args: argparse.Namespace, output: Path, trust_remote_code: bool) -> str:
    """Measure ``output`` against the source at its own precision; record and describe the figures.

    A GGUF is its own reference (as openvino-genai reads it); any other source is exported to fp16 in a
    scratch folder first, the closest IR to its original weights.
    """
    import json
    import tempfile

    from adapters.export.optimum_intel import PRESETS, export_model
    from adapters.export.quality import Variant, compare_quality
    from adapters.openvino.devices import cpu_summary, effective_precision
    from adapters.openvino.spec import precision_hint

    text = args.text.read_text(encoding="utf-8") if args.text else None
    cache = _cache_path(args)
    source = Path(args.source).expanduser()
    with tempfile.TemporaryDirectory(prefix="openarc-reference-") as scratch:
        if source.suffix == ".gguf":
            reference, described = source, "the source GGUF, as openvino-genai reads it"
        else:
            reference, described = Path(scratch) / "fp16", "an fp16 export of the source"
            options = dataclasses.replace(PRESETS["fp16"], trust_remote_code=trust_remote_code)
            export_model(args.source, reference, options, "fp16")
        figures = compare_quality(Variant(reference), [Variant(output)], text, gguf_cache=cache / "converted")
    mine, theirs = figures[Variant(output)], figures[Variant(reference)]
    record = {
        "reference": described,
        "text": str(args.text) if args.text else "openarc default",
        "reference_perplexity": theirs.perplexity,
        **dataclasses.asdict(mine),
        # Both ran at OpenArc's auto precision: bf16 and f32 machines give different figures.
        "inference_precision": effective_precision("CPU", precision_hint("CPU")),
        "cpu": cpu_summary(),
    }
    manifest = json.loads((output / MANIFEST).read_text())
    (output / MANIFEST).write_text(json.dumps({**manifest, "quality": record}, indent=2) + "\n")
    return (
        f"quality against {described}, at inference precision {record['inference_precision']}, "
        f"{mine.positions} positions: perplexity {mine.perplexity:.2f} "
        f"(reference {theirs.perplexity:.2f}), mean KL {mine.kl_mean:.4f}, KL p99 {mine.kl_p99:.3f}, "
        f"top-1 agreement {mine.top1_agreement:.1%}"
    )


def _sweep(args: argparse.Namespace) -> int:
    """Export the sweep's candidates (reusing finished ones), compare them, recommend one."""
    from adapters.export.compare import compare_models, render
    from adapters.export.optimum_intel import export_model, source_task
    from adapters.export.sweep import already_exported, candidates, choose, layer_sizes

    precisions = _precisions(args)
    if args.preset or args.weight_format:
        raise ConfigError("--sweep chooses the presets itself; drop --preset and --weight-format")
    if (args.task or source_task(args.source)) != "text-generation":
        raise ConfigError("--sweep compares chat (text-generation) models only")
    folder = args.output or _default_output(args, "sweep")
    available = candidates(layer_sizes(args.source), args.num_samples)
    chosen = choose(args.candidates.split(","), available) if args.candidates else available
    for candidate in chosen:
        output = folder / candidate.name
        if already_exported(output, candidate) and not args.force:
            logger.info("%s: already exported in %s", candidate.name, output)
            continue
        with _stdout_to_stderr():
            export_model(args.source, output, candidate.options, candidate.preset, force=True)
    text = args.text.read_text(encoding="utf-8") if args.text else None
    rows = compare_models(
        [folder / c.name for c in chosen],
        text=text,
        repeats=args.repeats,
        precisions=precisions,
        gguf_cache=_cache_path(args) / "converted",
        scheduler=msgspec.structs.asdict(SchedulerSettings()),
    )
    sys.stdout.write(render(rows, args.form, args.kl_threshold))
    return 0


def _compare(args: argparse.Namespace) -> int:
    """``openarc compare``: measure the models side by side and print the table."""
    from adapters.export.compare import compare_models, render

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rows = compare_models(
        args.models,
        args.device,
        args.reference,
        args.text.read_text(encoding="utf-8") if args.text else None,
        args.max_tokens,
        args.repeats,
        args.quality,
        _precisions(args),
        gguf_cache=_cache_path(args) / "converted",  # where the server keeps its GGUF conversions
        scheduler=msgspec.structs.asdict(SchedulerSettings()),  # the server's defaults
    )
    sys.stdout.write(render(rows, args.form, args.kl_threshold))
    return 0


def _precisions(args: argparse.Namespace) -> tuple[InferencePrecision, ...]:
    """``--precision f32,bf16``: the inference precisions every model is measured at."""
    try:
        return parse_precisions(args.precision)
    except ValueError as exc:
        raise ConfigError(f"--precision: {exc}") from None


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send file descriptor 1 to stderr: NNCF prints its tables to stdout, where the sweep's table (JSON
    with ``--format json``) must be alone. At the descriptor, since NNCF's log handler holds the stream."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _export_options(args: argparse.Namespace) -> tuple[ExportOptions, str | None]:
    """The export's ``ExportOptions`` and preset name: the task's default preset, then the flags on top."""
    from adapters.export.optimum_intel import PRESETS, ExportOptions, source_task

    # The task decides the default preset: int4 with calibration for chat models, fp16 for encoders
    # (small, and data-aware compression does not apply to them).
    task = args.task or source_task(args.source)
    default = "int4-awq-se" if task == "text-generation" else "fp16"
    preset = args.preset or (None if args.weight_format else default)
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    options = PRESETS[preset] if preset else ExportOptions(weight_format=args.weight_format)
    chosen = {
        field: getattr(args, field)
        for field in ExportOptions.__dataclass_fields__
        if getattr(args, field, None) is not None and field not in ("trust_remote_code", "task")
    }
    options = dataclasses.replace(options, **chosen, task=task, trust_remote_code=args.trust_remote_code)
    if chosen and preset:
        preset = f"{preset} (modified)"
    return options, preset


def _models(args: argparse.Namespace) -> int:
    """The catalog a server with these settings would serve, or a running server's own list (``--url``)."""
    from .catalog import build_catalog, format_table

    if args.url:
        return _live_models(args.url, args.api_key or os.environ.get("OPENARC_API_KEY", "").split(",")[0])
    config = load_config(args.config)
    if args.cache_dir:
        config = msgspec.structs.replace(config, cache_dir=args.cache_dir)
    single = [msgspec.structs.replace(_model_spec(str(p)), preload=False) for p in args.paths if p.is_file()]
    folders = [str(p) for p in args.paths if not p.is_file()]
    if args.models_dirs:  # as serve does: --models-dir replaces the default folders
        config = msgspec.structs.replace(config, models_dirs=[*(config.models_dirs or []), *args.models_dirs])
    served = with_defaults(config)  # the demo model, named as the server names it
    config = msgspec.structs.replace(
        served,
        models=[*served.models, *single],
        models_dirs=[*(str(p) for p in served.models_paths), *folders],
    )
    sys.stdout.write(format_table(build_catalog(config)) + "\n")
    return 0


def _live_models(url: str, api_key: str) -> int:
    import httpx

    from .catalog import format_live_table

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        answer = httpx.get(f"{url.rstrip('/').removesuffix('/v1')}/v1/models", headers=headers, timeout=30)
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        sys.stderr.write(f"openarc models: {url}: {exc}\n")
        return 1
    sys.stdout.write(format_live_table(answer.json()["data"]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
