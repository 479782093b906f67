"""OpenArc's HTTP gateway: OpenAI's APIs and Anthropic's Messages API in front of the adapters."""

__version__ = "0.1.0"
