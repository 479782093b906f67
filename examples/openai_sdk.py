"""Chat with OpenArc through the official openai SDK: one answer, then a streamed one.

Run the server first (./scripts/serve), then: python examples/openai_sdk.py
"""

import os

from openai import OpenAI

base_url = os.environ.get("OPENARC_BASE_URL", "http://127.0.0.1:8000/v1")
model = os.environ.get("OPENARC_MODEL", "SmolLM2-135M-Instruct")
client = OpenAI(base_url=base_url, api_key="not-needed")

answer = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    max_tokens=50,
    temperature=0.2,  # the demo model is tiny: OpenAI's default of 1.0 makes it ramble
)
print(answer.choices[0].message.content)

stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Write a haiku about the sea."}],
    max_tokens=60,
    temperature=0.2,
    stream=True,
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
