"""Chat with OpenArc through LlamaIndex's OpenAILike: chat, then stream_chat.

Run the server first (./scripts/serve), then: python examples/llamaindex_chat.py
"""

import os

from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike

llm = OpenAILike(
    api_base=os.environ.get("OPENARC_BASE_URL", "http://127.0.0.1:8000/v1"),
    model=os.environ.get("OPENARC_MODEL", "SmolLM2-135M-Instruct"),
    api_key="not-needed",
    is_chat_model=True,
    max_tokens=60,
    temperature=0.2,  # the demo model is tiny: OpenAI's default of 1.0 makes it ramble
)

reply = llm.chat([ChatMessage(role="user", content="What is the capital of France?")])
print(reply.message.content)

for part in llm.stream_chat([ChatMessage(role="user", content="Write a haiku about the sea.")]):
    print(part.delta, end="", flush=True)
print()
