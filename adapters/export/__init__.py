"""``openarc export``: OpenVINO IR from Hugging Face models and GGUF files through optimum-intel.

Not part of serving: optimum-intel (and torch) are imported lazily, only here, from the ``export`` extra.
"""
