"""A LangChain agent with a tool: the model calls it, we run it, the model answers from its result.

The loop is LangChain's own pieces, nothing hidden: `@tool` describes the function, `bind_tools` sends
it, each `AIMessage.tool_calls` entry is run with `tool.invoke(call)`, which returns the `ToolMessage`
that goes back into the history, until the model answers in text.

The first step names the tool in `tool_choice`: OpenArc then constrains generation to a valid call whose
arguments match the tool's schema, which is what lets the 135M demo model (which knows nothing of tools)
take part. The later steps force nothing, so the model answers from the tool's result. With a model
that writes calls itself (Qwen, Llama 3.1, Mistral), bind the tools with `tool_choice="auto"` for every
step instead, and the loop runs whatever further calls it makes.

Run the server first (./scripts/serve), then: python examples/langchain_agent.py
Settings: OPENARC_BASE_URL, OPENARC_MODEL, OPENARC_EXAMPLE_QUESTION.
"""

import os
from typing import Literal

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

base_url = os.environ.get("OPENARC_BASE_URL", "http://127.0.0.1:8000/v1")
model = os.environ.get("OPENARC_MODEL", "SmolLM2-135M-Instruct")
question = os.environ.get("OPENARC_EXAMPLE_QUESTION", "What is the weather like in Paris?")
MAX_STEPS = 4


class WeatherQuery(BaseModel):
    """The arguments of `get_weather`."""

    # maxLength bounds what a forced call may write: a tiny model might otherwise never close the string.
    city: str = Field(max_length=40, description="The city's name")
    unit: Literal["celsius", "fahrenheit"] = Field(description="The temperature unit")


@tool(args_schema=WeatherQuery)
def get_weather(city: str, unit: str) -> str:
    """The current weather in a city."""
    return f"18 degrees {unit}, sunny, in {city}"


TOOLS = {get_weather.name: get_weather}

llm = ChatOpenAI(base_url=base_url, api_key="not-needed", model=model, max_tokens=80, temperature=0.2)
forced = llm.bind_tools(list(TOOLS.values()), tool_choice=get_weather.name)
# The later steps send no tools: SmolLM2's template has no tool syntax, and shown the tools again (even
# under "auto" or "none") the demo model copies the rendered tool result instead of answering.
unforced = llm

messages: list[BaseMessage] = [HumanMessage(question)]
for step in range(MAX_STEPS):
    reply = (forced if step == 0 else unforced).invoke(messages)
    messages.append(reply)
    if not reply.tool_calls:
        break
    for call in reply.tool_calls:
        print(f"call: {call['name']}({call['args']})")
        result = TOOLS[call["name"]].invoke(call)  # a ToolCall in, a ToolMessage (with its id) out
        print(f"result: {result.content}")
        messages.append(result)
print(f"answer: {' '.join(messages[-1].content.split())}")
