"""What an IR's weights really are: the census of their precisions and group sizes, read from the file.

The manifest records the options an export was asked for; this reads what NNCF and optimum-intel
actually wrote. A weight is a constant that reaches a ``MatMul`` (linear layers, the LM head) or a
``Gather`` (the embedding table) through nothing but constants and the decompression ops NNCF inserts
(``Convert``, ``Subtract`` of a zero point, ``Multiply`` by a scale, ``Reshape``); the largest constant
of that subgraph is the stored weight and its element type is its precision. Grouped int4 weights are
stored as ``[rows, groups, group_size]``, so the group size is the last dimension; a compressed 2-D
weight has one scale per row (group size ``-1``). Needs only the OpenVINO runtime.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Ops between a stored weight and the layer that uses it, in NNCF's decompression subgraphs.
_DECOMPRESSION_OPS = {"Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Unsqueeze", "Squeeze"}
# Layers that read weights, and which of their inputs may be one.
_WEIGHT_INPUTS = {"MatMul": (0, 1), "Gather": (0,)}
_PRECISION_NAMES = {
    "u4": "int4",
    "i4": "int4",
    "u8": "int8",
    "i8": "int8",
    "f16": "fp16",
    "bf16": "bf16",
    "f32": "fp32",
    "nf4": "nf4",
    "f8e4m3": "fp8",
    "f8e5m2": "fp8",
}
_COMPRESSED = ("int4", "int8", "nf4", "fp8")


@dataclass(frozen=True)
class PrecisionCensus:
    """Weights of one IR by precision; shares are of weight parameters (elements), not of files."""

    parameters: int
    """Weight parameters in the model (a weight shared by two layers, as tied embeddings are, counts once)."""
    weights: dict[str, float]
    """Share of the parameters stored in each precision (``int4``, ``int8``, ``fp16``, ``fp32``...)."""
    tensors: dict[str, int]
    """Number of weight tensors in each precision."""
    group_sizes: dict[str, list[int]]
    """For each compressed precision, the group sizes found (``-1``: one scale per output row)."""
    model_bytes: int
    """Size of ``openvino_model.xml`` and ``openvino_model.bin`` together."""

    def as_dict(self) -> dict[str, Any]:
        """The census as plain JSON types: what the export manifest records under ``precision``."""
        return {
            "parameters": self.parameters,
            "weights": self.weights,
            "tensors": self.tensors,
            "group_sizes": self.group_sizes,
            "model_bytes": self.model_bytes,
        }


def precision_census(folder: Path) -> PrecisionCensus:
    """Read ``folder/openvino_model.xml`` (and its ``.bin``) and count its weights by precision."""
    import openvino as ov

    xml = folder / "openvino_model.xml"
    model = ov.Core().read_model(xml)
    weights: dict[str, Any] = {}  # by constant name: one entry per stored tensor
    for node in model.get_ordered_ops():
        for index in _WEIGHT_INPUTS.get(node.get_type_name(), ()):
            leaves = _constant_leaves(node.input_value(index).get_node())
            if leaves:
                stored = max(leaves, key=_elements)
                if _is_matrix(stored):
                    weights[stored.get_friendly_name()] = stored
    parameters: Counter[str] = Counter()
    tensors: Counter[str] = Counter()
    groups: defaultdict[str, set[int]] = defaultdict(set)
    for constant in weights.values():
        precision = _precision(constant)
        parameters[precision] += _elements(constant)
        tensors[precision] += 1
        if precision in _COMPRESSED:
            shape = list(constant.get_output_shape(0))
            groups[precision].add(shape[-1] if len(shape) == 3 else -1)
    total = sum(parameters.values())
    return PrecisionCensus(
        parameters=total,
        weights={name: round(count / total, 4) for name, count in parameters.most_common()},
        tensors=dict(tensors.most_common()),
        group_sizes={name: sorted(sizes) for name, sizes in sorted(groups.items())},
        model_bytes=xml.stat().st_size + xml.with_suffix(".bin").stat().st_size,
    )


def _constant_leaves(node: Any) -> list[Any] | None:
    """The constants a layer input is computed from, or ``None`` if it depends on anything else."""
    kind = node.get_type_name()
    if kind == "Constant":
        return [node]
    if kind not in _DECOMPRESSION_OPS:
        return None
    leaves = []
    for source in node.input_values():
        found = _constant_leaves(source.get_node())
        if found is None:
            return None
        leaves += found
    return leaves


def _is_matrix(constant: Any) -> bool:
    """Two dimensions above 1: a weight matrix, not a constant vector such as RoPE's frequencies."""
    return sum(dimension > 1 for dimension in constant.get_output_shape(0)) >= 2


def _elements(constant: Any) -> int:
    count = 1
    for dimension in constant.get_output_shape(0):
        count *= dimension
    return count


def _precision(constant: Any) -> str:
    name = constant.get_element_type().get_type_name()
    return _PRECISION_NAMES.get(name, name)
