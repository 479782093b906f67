"""OpenArc's HTTP gateway: an OpenAI-compatible API in front of OpenVINO adapters."""

__version__ = "0.1.0"
