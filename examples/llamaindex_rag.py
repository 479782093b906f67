"""Retrieval-augmented answers with LlamaIndex, served by OpenArc alone: embeddings and chat.

A few in-code notes are embedded through OpenArc's /v1/embeddings (`OpenAILikeEmbedding`) into an
in-memory `VectorStoreIndex`; the question retrieves the closest ones and the chat model
(`OpenAILike`) answers from them. Both are set on `Settings` explicitly: LlamaIndex otherwise falls back
to OpenAI's own models and api.openai.com.

Run a server with an embedding model besides the chat model: export one (for example
`openarc export sentence-transformers/all-MiniLM-L6-v2 minilm`), add it to the config as
`[[models]] id = "minilm", source = "minilm"`, then:
OPENARC_EMBEDDING_MODEL=minilm python examples/llamaindex_rag.py
Settings: OPENARC_BASE_URL, OPENARC_MODEL, OPENARC_EMBEDDING_MODEL, OPENARC_EXAMPLE_QUESTION.
"""

import os

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.embeddings.openai_like import OpenAILikeEmbedding
from llama_index.llms.openai_like import OpenAILike

base_url = os.environ.get("OPENARC_BASE_URL", "http://127.0.0.1:8000/v1")
chat_model = os.environ.get("OPENARC_MODEL", "SmolLM2-135M-Instruct")
embedding_model = os.environ.get("OPENARC_EMBEDDING_MODEL", "all-MiniLM-L6-v2")
question = os.environ.get("OPENARC_EXAMPLE_QUESTION", "Where do we gather if there is a fire?")

NOTES = [
    "The office wifi password is printed on the router in room 4.",
    "Lunch is served in the canteen from noon to two o'clock.",
    "The fire assembly point is the car park behind building B.",
    "Expense reports are due on the last Friday of each month.",
    "The library lends laptops for up to three days.",
]

Settings.embed_model = OpenAILikeEmbedding(
    model_name=embedding_model, api_base=base_url, api_key="not-needed"
)
Settings.llm = OpenAILike(
    model=chat_model,
    api_base=base_url,
    api_key="not-needed",
    is_chat_model=True,
    context_window=8192,  # SmolLM2's; LlamaIndex sizes the retrieved context to fit it
    max_tokens=60,
    temperature=0.2,  # the demo model is tiny: OpenAI's default of 1.0 makes it ramble
)

index = VectorStoreIndex.from_documents([Document(text=note) for note in NOTES])
response = index.as_query_engine(similarity_top_k=2).query(question)
print("retrieved:", [source.node.get_content() for source in response.source_nodes])
print("answer:", " ".join(str(response).split()))
