"""What runs in the child processes a model is served by; the only code here that imports OpenVINO.

- ``loop``: the engine process (receive commands, step the engine, send what it made), with
  ``engine`` (the ``SteppedEngine`` protocol and continuous batching), ``sequential`` (one request at a
  time, for NPU), ``pipeline`` (loads and warms a pipeline into an engine), ``prompt`` (chat template,
  tokenization, generation config) and ``prefix_cache`` (the record of cached tokens).
- ``preparer``: the prompt preparer process beside each engine (templating, tokenizing and grammar
  checks off the engine's loop), with ``grammar_check``.
- ``encoder_loop``: the encoder process of an embedding or rerank model.

The server side (``adapters.openvino``) never imports this package: it names the entry points
(``module:function``) for the supervisor to start, and talks to them in ``adapters.channel``'s messages.
"""
