"""Backends behind the gateway. Only ``adapters.openvino_*`` modules import OpenVINO."""
