"""The OpenVINO GenAI backend.

Server side (no OpenVINO imported): ``adapter`` (the adapter protocol), ``process`` (the handle on one
engine process: routing, cancellation, failure detection), ``spec`` and ``model_files``.
Engine process side: ``worker`` (the process's loop), ``pipeline`` (loads and warms a pipeline into an
engine), ``engine`` (continuous batching), ``sequential`` (one request at a time, for NPU), ``prompt``
(chat template, tokenization, generation config) and ``prefix_cache`` (the cached-token record).
"""
