"""The APIs OpenArc speaks, one module or package each, side by side on the one generation path.

A dialect is its wire types, the mapping of its request onto ``GenerationParams``, the mapping of the
adapter's events onto its chunks or typed events, and its error shape. None of them touches the
engine: ``gateway.generation`` starts every generation, whatever the dialect.

- ``chat``: OpenAI's chat completions (``/v1/chat/completions``)
- ``completions``: OpenAI's legacy text completions (``/v1/completions``)
- ``responses``: OpenAI's Responses API (``/v1/responses``), translated onto ``chat``
- ``messages``: Anthropic's Messages API (``/v1/messages``), translated onto ``chat``
- ``tokenize``: ``/tokenize`` and ``/detokenize``, in vLLM's shape
"""
