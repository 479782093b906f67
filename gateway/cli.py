"""The ``openarc`` command: parse flags into a ``ServerConfig`` and start the server. Nothing else."""

from __future__ import annotations

import argparse
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


def _models(args: argparse.Namespace) -> int:
    from .catalog import catalog, format_table

    config = load_config(args.config)
    if args.cache_dir:
        config = msgspec.structs.replace(config, cache_dir=args.cache_dir)
    sys.stdout.write(format_table(catalog(config, args.paths)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
