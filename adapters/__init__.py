"""Backends behind the gateway, with no HTTP in them.

Backend-neutral: ``base`` (the adapter protocol, its events and errors), ``text`` (detokenizing and
stop strings), ``output_parsing`` (content, reasoning and tool calls out of generated text),
``json_grammar`` (JSON Schema to a grammar) and ``channel`` (messages between the server and an engine
process). The backend is ``openvino``; only ``adapters.openvino.worker`` (the child processes) imports
OpenVINO at module level. ``export`` is ``openarc export``, not serving.
"""
