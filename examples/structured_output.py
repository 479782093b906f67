"""Synthetic data with a JSON schema: several records generated at once, each guaranteed to validate.

`response_format={"type": "json_schema", ...}` makes OpenArc constrain generation to the schema, so the
content always parses; the requests run concurrently and share the engine's batch.

Run the server first (./scripts/serve), then: python examples/structured_output.py
"""

import asyncio
import json
import os

from openai import AsyncOpenAI

base_url = os.environ.get("OPENARC_BASE_URL", "http://127.0.0.1:8000/v1")
model = os.environ.get("OPENARC_MODEL", "SmolLM2-135M-Instruct")
count = int(os.environ.get("OPENARC_EXAMPLE_COUNT", "4"))
client = AsyncOpenAI(base_url=base_url, api_key="not-needed")

PRODUCT = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 30},
        "category": {"type": "string", "enum": ["kitchen", "garden", "office", "toys"]},
        "price_eur": {"type": "number", "minimum": 0, "maximum": 1000},
        "in_stock": {"type": "boolean"},
    },
    "required": ["name", "category", "price_eur", "in_stock"],
}


async def product(number: int) -> dict:
    """Ask for product `number` under the JSON schema, and parse the record it gets."""
    answer = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": f"Invent product number {number} for a shop catalogue."}],
        response_format={"type": "json_schema", "json_schema": {"name": "product", "schema": PRODUCT}},
        max_tokens=120,
        temperature=0.8,
        seed=number,
    )
    return json.loads(answer.choices[0].message.content)


async def main() -> None:
    """Generate `count` products at once and print each as a JSON line."""
    for record in await asyncio.gather(*(product(n) for n in range(count))):
        print(json.dumps(record))


asyncio.run(main())
