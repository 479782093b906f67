"""Chat with OpenArc through LangChain's ChatOpenAI: invoke, then stream.

Run the server first (./scripts/serve), then: python examples/langchain_chat.py
"""

import os

from langchain_openai import ChatOpenAI

llm = ChatOpenAI(
    base_url=os.environ.get("OPENARC_BASE_URL", "http://127.0.0.1:8000/v1"),
    model=os.environ.get("OPENARC_MODEL", "SmolLM2-135M-Instruct"),
    api_key="not-needed",
    max_tokens=60,
    temperature=0.2,  # the demo model is tiny: OpenAI's default of 1.0 makes it ramble
)

print(llm.invoke("What is the capital of France?").content)

for chunk in llm.stream("Write a haiku about the sea."):
    print(chunk.content, end="", flush=True)
print()
