"""Benchmarks that drive a real OpenArc server over HTTP and the raw openvino-genai pipeline in-process."""
