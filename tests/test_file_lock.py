"""Engines that compile into one CACHE_DIR take turns (README, Design): OpenVINO's compiled-model cache
is not safe for two processes compiling the same model at once."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from adapters.openvino.spec import PipelineSpec
from gateway.config import ServerConfig
from gateway.sources import ensure_demo_model

_SPAWN = multiprocessing.get_context("spawn")


def _hold_the_compile_lock(cache_dir: str, record: str) -> None:
    """Hold the engines' compile lock for a while and write when it was held (one line)."""
    from adapters.openvino.worker.pipeline import _compile_cache_lock

    with _compile_cache_lock(cache_dir):
        entered = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on the machine
        time.sleep(0.5)
        left = time.monotonic()
    Path(record).write_text(f"{entered} {left}")


def test_two_processes_hold_the_compile_lock_in_turns(tmp_path):
    """Two processes ask at once; whatever the scheduling, the times they held it do not overlap."""
    records = [tmp_path / f"held-{i}.txt" for i in range(2)]
    workers = [
        _SPAWN.Process(target=_hold_the_compile_lock, args=(str(tmp_path / "cache"), str(record)))
        for record in records
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    (first, first_end), (second, second_end) = sorted(
        tuple(map(float, record.read_text().split())) for record in records
    )
    assert first < first_end <= second < second_end
    assert (tmp_path / "cache" / ".openarc-compile.lock").is_file()


def _build(spec: PipelineSpec) -> None:
    from adapters.openvino.worker.pipeline import build_engine

    build_engine(spec).close()


def test_two_engines_compiling_into_one_fresh_cache_both_load(tmp_path):
    """The failure the lock prevents: two engines compiling the same model into an empty CACHE_DIR at once
    (a restart beside a run-time load, or two servers sharing a cache). Both must load, and the cache then
    holds the compiled model."""
    path = ensure_demo_model(ServerConfig().cache_path)
    cache = tmp_path / "compiled"
    spec = PipelineSpec(
        model_id="locked",
        path=path,
        device="CPU",
        properties={"CACHE_DIR": str(cache)},
        scheduler={"cache_size": 1},
        converted_dir=ServerConfig().cache_path / "converted",
    )
    engines = [_SPAWN.Process(target=_build, args=(spec,)) for _ in range(2)]
    for engine in engines:
        engine.start()
    for engine in engines:
        engine.join(timeout=600)
    assert [engine.exitcode for engine in engines] == [0, 0]
    assert list(cache.glob("*.blob")), "the compiled model was cached"
