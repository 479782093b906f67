"""Synthetic data: N records generated concurrently under a JSON schema, validated, written as JSONL.

`response_format={"type": "json_schema", ...}` makes OpenArc constrain generation to the schema (enums,
number bounds, string lengths), so even the 135M demo model writes records that parse and validate; the
prompts vary the product and the mood so the records differ. Each record is checked again here with
`jsonschema` (when installed; otherwise it is only parsed) and written to the JSONL file as it arrives.
A record cut off by max_tokens would not parse (max_tokens leaves room for the longest record the
schema allows): it would be counted as rejected, not written.

Run the server first (./scripts/serve), then: python examples/synthetic_data.py
Settings: OPENARC_BASE_URL, OPENARC_MODEL, OPENARC_EXAMPLE_COUNT (records, 20),
OPENARC_EXAMPLE_CONCURRENCY (in flight at once, 16), OPENARC_OUTPUT (the JSONL path; a new temporary
file by default).
"""

import asyncio
import json
import os
import tempfile

from openai import AsyncOpenAI
from tqdm import tqdm  # a dependency of the openai SDK itself

try:
    import jsonschema
except ImportError:  # only parsing, then: OpenArc's grammar already enforces the schema
    jsonschema = None

base_url = os.environ.get("OPENARC_BASE_URL", "http://127.0.0.1:8000/v1")
model = os.environ.get("OPENARC_MODEL", "SmolLM2-135M-Instruct")
count = int(os.environ.get("OPENARC_EXAMPLE_COUNT", "20"))
concurrency = int(os.environ.get("OPENARC_EXAMPLE_CONCURRENCY", "16"))

PRODUCTS = ["kettle", "laptop", "garden hose", "office chair", "headphones", "bicycle lamp"]
MOODS = ["delighted", "annoyed", "confused", "indifferent"]

REVIEW = {
    "type": "object",
    "properties": {
        "product": {"type": "string", "enum": PRODUCTS},
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "title": {"type": "string", "minLength": 3, "maxLength": 40},
        "text": {"type": "string", "minLength": 10, "maxLength": 160},
        "would_recommend": {"type": "boolean"},
    },
    "required": ["product", "rating", "sentiment", "title", "text", "would_recommend"],
    "additionalProperties": False,
}


def check(content: str) -> dict:
    """The record in `content`; raises ValueError if it does not parse or does not match REVIEW."""
    record = json.loads(content)
    if jsonschema is not None:
        try:
            jsonschema.validate(record, REVIEW)
        except jsonschema.ValidationError as error:
            raise ValueError(error.message) from error
    return record


async def review(client: AsyncOpenAI, number: int, limit: asyncio.Semaphore) -> str:
    """One generated review, as the JSON text the model wrote."""
    product = PRODUCTS[number % len(PRODUCTS)]
    mood = MOODS[number // len(PRODUCTS) % len(MOODS)]
    async with limit:
        answer = await client.chat.completions.create(
            model=model,
            messages=[
                {"role": "user", "content": f"Write a short review of a {product} by a {mood} customer."}
            ],
            response_format={"type": "json_schema", "json_schema": {"name": "review", "schema": REVIEW}},
            # The schema bounds a record to about 320 characters; a token is at least one character
            # here (but for rare byte-level pieces), so 400 tokens leave room for the longest record.
            max_tokens=400,
            temperature=0.7,
            seed=number,
        )
    return answer.choices[0].message.content or ""


async def main() -> None:
    """Generate `count` reviews concurrently, write the valid ones as JSON Lines and print a summary."""
    path = os.environ.get("OPENARC_OUTPUT")
    if not path:
        handle, path = tempfile.mkstemp(prefix="openarc-reviews-", suffix=".jsonl")
        os.close(handle)
    client = AsyncOpenAI(base_url=base_url, api_key="not-needed")
    limit = asyncio.Semaphore(concurrency)
    written = rejected = 0
    with open(path, "w", encoding="utf-8") as out, tqdm(total=count, desc="records", unit="rec") as bar:
        for next_done in asyncio.as_completed([review(client, n, limit) for n in range(count)]):
            try:
                record = check(await next_done)
            except ValueError as error:  # json.JSONDecodeError is a ValueError too
                rejected += 1
                bar.write(f"rejected: {error}")
            else:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
            bar.update()
    checked = "validated with jsonschema" if jsonschema is not None else "parsed"
    print(f"wrote {written} records ({checked}, {rejected} rejected) to {path}")
    with open(path, encoding="utf-8") as written_file:
        print("first:", written_file.readline().strip())


if __name__ == "__main__":
    asyncio.run(main())
