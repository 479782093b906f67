"""Do greedy answers depend on the batch? Eight prompts alone and together, per precision configuration.

The raw ``ContinuousBatchingPipeline`` (no HTTP) generates a greedy answer for each of eight prompts
alone, then for all eight in one batch, and counts the answers that differ and where each first differs.
The same is done for prompt-lookup speculative decoding against plain decoding on one prompt. Run per
configuration: OpenArc's default on CPU (f32, with OpenVINO's dynamic quantization of activations), f32
without it (``DYNAMIC_QUANTIZATION_GROUP_SIZE = 0``), and bf16. The answer depends on the CPU: the report
starts with its flags.

    python -m bench.batch_invariance [--model demo] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

TOPICS = ["cats", "the moon", "a lighthouse", "bread", "rivers", "a robot", "winter", "chess"]
STORY = "Write a short story about a lighthouse keeper."
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "f32 (auto)": {},
    "f32, DYNAMIC_QUANTIZATION_GROUP_SIZE=0": {"DYNAMIC_QUANTIZATION_GROUP_SIZE": 0},
    "bf16": {"INFERENCE_PRECISION_HINT": "bf16"},
}


def first_difference(a: str, b: str) -> int | None:
    """The index of the first character where ``a`` and ``b`` differ (``None``: equal)."""
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def answers(path: Any, properties: dict[str, Any], prompts: list[str], max_tokens: int, **extra: Any) -> Any:
    """Greedy answers to ``prompts``: each alone, then all in one batch."""
    import openvino_genai as ov_genai

    from adapters.base import ChatMessage
    from adapters.export.raw_pipeline import encode_chat
    from adapters.openvino.spec import default_properties
    from adapters.openvino.worker.pipeline import scheduler_config

    scheduler = scheduler_config({"cache_size": 1, "max_num_seqs": 16, "enable_prefix_caching": False})
    pipeline = ov_genai.ContinuousBatchingPipeline(
        str(path), scheduler, "CPU", {**default_properties("CPU", properties), **extra}
    )
    tokenizer = pipeline.get_tokenizer()
    config = ov_genai.GenerationConfig()
    config.max_new_tokens = max_tokens
    if extra.get("prompt_lookup"):
        config.num_assistant_tokens, config.max_ngram_size = 4, 3
    ids = [encode_chat(tokenizer, (ChatMessage("user", text),))[0] for text in prompts]
    alone = [tokenizer.decode(pipeline.generate([i], [config])[0].m_generation_ids[0]) for i in ids]
    together = [tokenizer.decode(r.m_generation_ids[0]) for r in pipeline.generate(ids, [config] * len(ids))]
    return alone, together


def main(argv: list[str] | None = None) -> int:
    """Measure every configuration and print the Markdown table."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.batch_invariance", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default="demo", help="model source (default: the demo model)")
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args(argv)

    from adapters.openvino.devices import cpu_summary

    from .raw import loaded_path

    path = loaded_path(args.model)
    prompts = [f"Tell me a short story about {topic}." for topic in TOPICS]
    lines = [
        f"{args.model}, greedy, {args.max_tokens} tokens; CPU: {cpu_summary()}.",
        "",
        "| configuration | batched differs from alone | first difference (characters) "
        "| prompt lookup differs from plain at character |",
        "|---|---|---|---|",
    ]
    for name, properties in CONFIGURATIONS.items():
        alone, together = answers(path, properties, prompts, args.max_tokens)
        firsts = [first_difference(a, b) for a, b in zip(alone, together, strict=True)]
        plain = answers(path, properties, [STORY], args.max_tokens)[0][0]
        guessed = answers(path, properties, [STORY], args.max_tokens, prompt_lookup=True)[0][0]
        where = first_difference(plain, guessed)
        differing = sorted(f for f in firsts if f is not None)
        lines.append(
            f"| {name} | {len(differing)} of {len(prompts)} | {', '.join(map(str, differing)) or '-'} "
            f"| {'-' if where is None else where} |"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
