"""Several personas taking turns over one conversation, and the prefix cache that makes it cheap.

A planner, a critic and a writer answer in turn; every turn sends the whole history again, as agent
frameworks do. OpenArc keeps the KV cache of prompts it has computed, so each turn pays only for what is
new: the script prints, per turn, the speaker, the time to first token and how many of the prompt's tokens
were served from the cache (`usage.prompt_tokens_details.cached_tokens`).

The shape matters: the shared history comes first and each speaker's instructions come last, as a user
turn. Had each persona had its own system prompt at the top, every turn would start with a different
prefix and nothing would be cached.

Run the server first (./scripts/serve), then: python examples/round_robin.py
Settings: OPENARC_BASE_URL, OPENARC_MODEL, OPENARC_EXAMPLE_TURNS (6), OPENARC_EXAMPLE_TOPIC,
OPENARC_EXAMPLE_MAX_TOKENS (per turn, 60).
"""

import os
import time

from openai import OpenAI

base_url = os.environ.get("OPENARC_BASE_URL", "http://127.0.0.1:8000/v1")
model = os.environ.get("OPENARC_MODEL", "SmolLM2-135M-Instruct")
turns = int(os.environ.get("OPENARC_EXAMPLE_TURNS", "6"))
topic = os.environ.get("OPENARC_EXAMPLE_TOPIC", "a weekend trip to the coast on a small budget")
max_tokens = int(os.environ.get("OPENARC_EXAMPLE_MAX_TOKENS", "60"))

PERSONAS = {
    "planner": "Propose one concrete step for the trip.",
    "critic": "Name one problem with the last proposal.",
    "writer": "Write a one-sentence summary of the plan.",
}

client = OpenAI(base_url=base_url, api_key="not-needed")
messages = [
    {
        "role": "system",
        "content": f"Three colleagues, a planner, a critic and a writer, plan {topic}. "
        "Whoever is asked answers in at most three sentences.",
    }
]
speakers = list(PERSONAS)
client.models.list()  # the first request pays for setting up the SDK and the connection: not a TTFT
for turn in range(1, turns + 1):
    speaker = speakers[(turn - 1) % len(speakers)]
    # The task first, the role after it: opened with "Critic, your turn." the demo model echoes that line.
    messages.append({"role": "user", "content": f"{PERSONAS[speaker]} (You are the {speaker}.)"})
    started = time.perf_counter()
    ttft = None
    parts = []
    usage = None
    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=0.7,
        frequency_penalty=0.5,  # small models copy the previous turn word for word without it
        seed=turn,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            ttft = ttft if ttft is not None else time.perf_counter() - started
            parts.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    reply = "".join(parts).strip()
    messages.append({"role": "assistant", "content": reply})

    # Engines whose cache layout OpenArc cannot know (the sequential one, AUTO) leave the details out.
    details = usage.prompt_tokens_details
    cached = "not reported" if details is None else f"{details.cached_tokens} cached"
    ttft_ms = f"{ttft * 1000:.0f} ms" if ttft is not None else "no text"
    print(f"turn {turn} {speaker}: TTFT {ttft_ms}, prompt {usage.prompt_tokens} tokens, {cached}")
    print(f"    {' '.join(reply.split())}")
