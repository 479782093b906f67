"""Backends behind the gateway. Only ``adapters.openvino.worker`` (the child processes) imports OpenVINO at module level."""
