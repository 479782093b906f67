"""Retrieval-augmented answers with LangChain, served by OpenArc alone: embeddings, rerank and chat.

The documents are embedded into LangChain's in-memory vector store through OpenArc's /v1/embeddings;
the question retrieves the closest ones, OpenArc's /v1/rerank reorders them (when a rerank model is
set), and the chat model answers from the best.

Run a server with an embedding model besides the chat model: export one (for example
`openarc export sentence-transformers/all-MiniLM-L6-v2 minilm`), add it to the config as
`[[models]] id = "minilm", source = "minilm"`, then: OPENARC_EMBEDDING_MODEL=minilm python examples/rag.py
(OPENARC_RERANK_MODEL=<id> adds the rerank step.)
"""

import os

import httpx
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

base_url = os.environ.get("OPENARC_BASE_URL", "http://127.0.0.1:8000/v1")
chat_model = os.environ.get("OPENARC_MODEL", "SmolLM2-135M-Instruct")
embedding_model = os.environ.get("OPENARC_EMBEDDING_MODEL", "all-MiniLM-L6-v2")
rerank_model = os.environ.get("OPENARC_RERANK_MODEL")

NOTES = [
    "The office wifi password is printed on the router in room 4.",
    "Lunch is served in the canteen from noon to two o'clock.",
    "The fire assembly point is the car park behind building B.",
    "Expense reports are due on the last Friday of each month.",
    "The library lends laptops for up to three days.",
]
QUESTION = "Where do we gather if there is a fire?"

# check_embedding_ctx_length=False: LangChain would otherwise send OpenAI's tiktoken ids, not text.
embeddings = OpenAIEmbeddings(
    base_url=base_url, api_key="not-needed", model=embedding_model, check_embedding_ctx_length=False
)
store = InMemoryVectorStore.from_documents([Document(page_content=note) for note in NOTES], embeddings)
found = [doc.page_content for doc in store.similarity_search(QUESTION, k=3)]
print("retrieved:", found)

if rerank_model:
    response = httpx.post(
        f"{base_url}/rerank", json={"model": rerank_model, "query": QUESTION, "documents": found}, timeout=60
    )
    response.raise_for_status()
    found = [found[result["index"]] for result in response.json()["results"]]
    print("reranked:", found)

llm = ChatOpenAI(base_url=base_url, api_key="not-needed", model=chat_model, temperature=0, max_tokens=60)
context = "\n".join(f"- {text}" for text in found[:2])
answer = llm.invoke(f"Answer from these notes only.\nNotes:\n{context}\n\nQuestion: {QUESTION}")
print("answer:", answer.content)
