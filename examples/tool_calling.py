"""An agent's loop with the openai SDK: the model calls a tool, we run it, it answers with the result.

`tool_choice="required"` makes OpenArc constrain generation to a valid call whose arguments match the
tool's JSON schema, so this works even with the 135M demo model, which knows nothing of tools. With a
model that writes calls itself (Qwen, Llama 3.1, Mistral), `tool_choice="auto"` lets it decide.

Run the server first (./scripts/serve), then: python examples/tool_calling.py
"""

import json
import os

from openai import OpenAI

base_url = os.environ.get("OPENARC_BASE_URL", "http://127.0.0.1:8000/v1")
model = os.environ.get("OPENARC_MODEL", "SmolLM2-135M-Instruct")
client = OpenAI(base_url=base_url, api_key="not-needed")

tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 40},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
            },
        },
    }
]


def get_weather(city: str, unit: str) -> str:
    """The tool the model calls: a made-up forecast for `city`, in `unit`."""
    return f"18 degrees {unit}, sunny, in {city}"


messages = [{"role": "user", "content": "What is the weather like in Paris?"}]
reply = (
    client.chat.completions.create(
        model=model,
        messages=messages,
        tools=tools,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=80,
        temperature=0,
    )
    .choices[0]
    .message
)
messages.append(reply.model_dump(exclude_none=True))
for call in reply.tool_calls:
    arguments = json.loads(call.function.arguments)
    print(f"the model called {call.function.name}({arguments})")
    messages.append({"role": "tool", "tool_call_id": call.id, "content": get_weather(**arguments)})

final = client.chat.completions.create(model=model, messages=messages, max_tokens=60, temperature=0.2)
print(final.choices[0].message.content)
