"""The ``openarc`` command: parse flags into a ``ServerConfig`` and start the server. Nothing else."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from . import __version__
from .config import ConfigError, ModelSpec, ServerConfig, load_config, with_defaults

logger = logging.getLogger("openarc")


# Commands with parsers of their own (they live outside the gateway and import heavier things).
_DELEGATED = {
    "bench": ("bench.__main__", "benchmark a server against the raw pipeline (see README)"),
    "compare": ("bench.compare", "compare exports of one model: speed, memory, answer agreement"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``openarc`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _DELEGATED:
        module = importlib.import_module(_DELEGATED[argv[0]][0])
        return module.main(argv[1:])
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
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--cache-dir", help="model and compiled-blob cache (default ~/.cache/openarc)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--admin-key", help="require this bearer key on /admin (default: $OPENARC_ADMIN_KEY)")
    serve.set_defaults(run=_serve, admin_key=os.environ.get("OPENARC_ADMIN_KEY"))

    models = commands.add_parser("models", help="list the models OpenArc knows: configured, cached, exported")
    models.add_argument("--config", type=Path, help="also list this config file's models")
    models.add_argument("--cache-dir", help="model cache to scan (default ~/.cache/openarc)")
    models.add_argument("paths", nargs="*", type=Path, help="more model files or folders of models")
    models.set_defaults(run=_models)

    export = commands.add_parser(
        "export", help="export a model to OpenVINO IR ahead of time (needs [export])"
    )
    export.add_argument("source", help="Hugging Face model id, local transformers folder, or .gguf file")
    export.add_argument("output", nargs="?", type=Path, help="output folder (default: the cache's exports/)")
    export.add_argument("--preset", help="int4-awq-se (recommended, default), int4, int8 (naive) or fp16")
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
    export.set_defaults(run=_export, sym=None)
    for name, (_, summary) in _DELEGATED.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def build_config(args: argparse.Namespace) -> ServerConfig:
    """The server config: file first, then CLI flags on top, then defaults and checks."""
    config = load_config(args.config)
    overrides = {
        name: getattr(args, name)
        for name in ("host", "port", "cache_dir", "log_level", "admin_key")
        if getattr(args, name) is not None
    }
    models = list(config.models) + [_model_spec(entry, args.device or "CPU") for entry in args.model]
    if args.device and not args.model:
        models = [msgspec.structs.replace(m, device=args.device) for m in with_defaults(config).models]
    return with_defaults(msgspec.structs.replace(config, models=models, **overrides))


def _model_spec(entry: str, device: str) -> ModelSpec:
    model_id, sep, source = entry.partition("=")
    if not sep:
        source = entry
        model_id = Path(source).stem if Path(source).suffix == ".gguf" else Path(source.rstrip("/")).name
    if not model_id or not source:
        raise ConfigError(f"--model {entry!r}: expected ID=SOURCE or SOURCE")
    return ModelSpec(id=model_id, source=source, device=device)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .registry import ModelRegistry

    config = build_config(args)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    registry = ModelRegistry(config)
    registry.load_all()  # before binding the port: a bad model is a one-line error, not a traceback
    if config.admin_key is None and config.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("/admin is open to anyone who can reach %s: set --admin-key", config.host)
    logger.info(
        "serving %s on http://%s:%d/v1", ", ".join(m.id for m in registry.models()), config.host, config.port
    )
    uvicorn.run(create_app(config, registry), host=config.host, port=config.port, log_level=config.log_level)
    return 0


def _export(args: argparse.Namespace) -> int:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from adapters.openvino_export import PRESETS, ExportError, ExportOptions, export_model

    preset = args.preset or (None if args.weight_format else "int4-awq-se")
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    options = PRESETS[preset] if preset else ExportOptions(weight_format=args.weight_format)
    chosen = {
        field: getattr(args, field)
        for field in ExportOptions.__dataclass_fields__
        if getattr(args, field, None) is not None and field != "trust_remote_code"
    }
    options = dataclasses.replace(options, **chosen, trust_remote_code=args.trust_remote_code)
    if chosen and preset:
        preset = f"{preset} (modified)"
    output = args.output
    if output is None:
        cache = Path(args.cache_dir).expanduser() if args.cache_dir else ServerConfig().cache_path
        name = Path(args.source).stem if args.source.endswith(".gguf") else Path(args.source).name
        output = cache / "exports" / f"{name}-{(args.preset or options.weight_format)}"
    try:
        manifest = export_model(args.source, output, options, preset, force=args.force)
    except ImportError as exc:
        raise ConfigError(
            f"openarc export needs the export extra (pip install 'openarc[export]'): {exc}"
        ) from exc
    except ExportError as exc:
        raise ConfigError(str(exc)) from exc
    for note in manifest["notes"]:
        sys.stderr.write(f"note: {note}\n")
    sys.stdout.write(f"{output}\n")
    return 0


def _models(args: argparse.Namespace) -> int:
    from .catalog import catalog, format_table

    config = load_config(args.config)
    if args.cache_dir:
        config = msgspec.structs.replace(config, cache_dir=args.cache_dir)
    sys.stdout.write(format_table(catalog(config, args.paths)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
