"""``python -m bench.speculative``: prompt-lookup decoding against plain decoding, over HTTP, in one run.

Starts one server with the model twice, plain and with ``speculative.method = "prompt_lookup"``, and
sends each workload to both, greedy, one request at a time. Prints per workload the decode speed of
each, the speed-up, and the tokens per step with prompt lookup, from the server's own counters
(``openarc_speculative_steps`` and ``openarc_speculative_accepted_tokens`` in ``/metrics``): one token
of the step's own plus the guessed tokens accepted. Workloads where the answer quotes the prompt
(editing a text, extraction, a RAG answer) should gain; an open story should not.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

import httpx

from gateway.config import ModelSpec, SpeculativeSettings
from gateway.harness import parse, serving, value

from .http_load import stream_chat

PARAGRAPH = (
    "The northern line opened in 1898 with four stations. Trains ran every twenty minutes from six in the "
    "morning until midnight. In 1932 the line was extended to the harbour, and in 1961 the wooden cars "
    "were replaced by steel ones. The last steam locomotive left service on 3 May 1968. Today the line "
    "carries about forty thousand passengers a day and is the oldest part of the city's network."
)
WORKLOADS = {
    "edit a text": f"Rewrite this text with 'the line' replaced by 'the railway', changing nothing else:\n\n"
    f"{PARAGRAPH}",
    "extraction": f"Copy, word for word, every sentence of this text that contains a year:\n\n{PARAGRAPH}",
    "RAG answer": f"Context:\n{PARAGRAPH}\n\nUsing only the context, and quoting it, answer: when was the "
    "line extended, and when did the last steam locomotive leave service?",
    "open story": "Write a long story about a lighthouse keeper.",
}


def main(argv: list[str] | None = None) -> int:
    """Serve the model plain and with prompt lookup, measure each workload on both and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.speculative", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="model source (default: the demo model)")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3, help="requests per workload and model (median)")
    parser.add_argument("--num-assistant-tokens", type=int, default=5)
    parser.add_argument("--max-ngram-size", type=int, default=3)
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)
    speculative = SpeculativeSettings(
        method="prompt_lookup",
        num_assistant_tokens=args.num_assistant_tokens,
        max_ngram_size=args.max_ngram_size,
    )
    models = [
        ModelSpec(id="plain", source=args.model, device=args.device),
        ModelSpec(id="prompt-lookup", source=args.model, device=args.device, speculative=speculative),
    ]
    with serving(models) as url:
        rows = asyncio.run(_measure(url, args.max_tokens, args.repeats))
    table = _table(rows, args)
    sys.stdout.write(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    return 0


async def _measure(url: str, max_tokens: int, repeats: int) -> list[tuple[str, dict, dict, bool]]:
    rows = []
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        for model in ("plain", "prompt-lookup"):  # warm both paths
            await stream_chat(client, model, [{"role": "user", "content": "Hello"}], 8)
        for name, prompt in WORKLOADS.items():
            figures, texts = {}, {}
            for model in ("plain", "prompt-lookup"):
                steps_before, accepted_before = await _speculation(client, model)
                runs = [
                    await stream_chat(client, model, [{"role": "user", "content": prompt}], max_tokens, False)
                    for _ in range(repeats)
                ]
                texts[model] = runs[0][0]
                timings = [timing for _, timing in runs]
                figures[model] = {
                    "tok_s": statistics.median(t.decode_rate for t in timings),
                    "tokens": statistics.median(t.completion_tokens for t in timings),
                }
                steps, accepted = await _speculation(client, model)
                figures[model]["per_step"] = 1 + (accepted - accepted_before) / max(steps - steps_before, 1)
            rows.append(
                (name, figures["plain"], figures["prompt-lookup"], texts["plain"] == texts["prompt-lookup"])
            )
    return rows


async def _speculation(client: httpx.AsyncClient, model: str) -> tuple[float, float]:
    """The server's speculative-decoding counters for ``model``: steps, and guessed tokens accepted."""
    samples = parse((await client.get("/metrics")).text)
    steps = value(samples, "openarc_speculative_steps_total", model=model)
    return steps, value(samples, "openarc_speculative_accepted_tokens_total", model=model)


def _table(rows: list[tuple[str, dict, dict, bool]], args: argparse.Namespace) -> str:
    lines = [
        f"Prompt-lookup decoding vs plain, {args.model} on {args.device}, greedy, up to {args.max_tokens} "
        f"tokens, num_assistant_tokens {args.num_assistant_tokens}, max_ngram_size {args.max_ngram_size}, "
        f"median of {args.repeats}.",
        "",
        "| workload | tokens | plain tok/s | prompt lookup tok/s | speed-up | tokens per step | same text |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, plain, lookup, same in rows:
        lines.append(
            f"| {name} | {lookup['tokens']:.0f} | {plain['tok_s']:.1f} | {lookup['tok_s']:.1f} | "
            f"{lookup['tok_s'] / plain['tok_s']:.2f}x | {lookup['per_step']:.2f} | "
            f"{'yes' if same else 'no'} |"
        )
    lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
