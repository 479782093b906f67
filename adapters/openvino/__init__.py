"""The OpenVINO GenAI backend.

Server side (this package; it imports no OpenVINO): ``adapter`` (a chat model behind the adapter
protocol), ``encoder`` (an embedding or rerank model, with its batcher), ``process`` (the handle on
one engine process: routing, cancellation, failure detection), ``spec`` and ``model_files`` (what to
load, and what a model folder holds), ``gguf_conversion`` and ``devices``.

Child-process side: ``worker`` (the engine, its prompt preparer and the encoder process).
"""
