"""OpenAI's Responses API (``/v1/responses``), as a translation onto the chat dialect.

A request becomes a ``ChatCompletionRequest`` (``request.to_chat_request``): ``instructions`` a system
message, input items the messages, assistant calls and tool results a chat template knows, function
tools chat tools, ``text.format`` a ``response_format``; then ``chat.to_params`` decides tools, forced
calls, structured outputs and sampling as for any chat. The generation's events become the API's typed
events (``events.ResponseEvents``), and the non-streaming response is what those same events built, so
both modes answer alike. A stored response keeps its whole conversation, so that
``previous_response_id`` continues it without the client resending anything.
"""
