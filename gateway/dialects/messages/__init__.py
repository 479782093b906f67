"""Anthropic's Messages API (``/v1/messages``, ``/v1/messages/count_tokens``), as a translation onto the
chat dialect.

A request becomes a ``ChatCompletionRequest`` (``request``): ``system`` a system message, text blocks
content, ``tool_use`` and ``tool_result`` blocks assistant calls and tool turns, ``tools`` chat tools,
``thinking`` the template's ``enable_thinking``. The generation's events become Anthropic's stream
events (``events``), the non-streaming message is what those same events built, and every error on
these routes is Anthropic's shape (``errors``).
"""
