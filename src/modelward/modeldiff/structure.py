"""What `modelward diff` compares: a model's tensors and, for graph formats, its nodes.

Every reader turns its format into one `ModelStructure`, so the comparison never
knows where a tensor or node came from. Dtypes use the safetensors names (`F32`,
`BF16`, `I64`...) whatever the format, so a safetensors file and a PyTorch
checkpoint of the same weights compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelward.errors import ModelwardError


class DiffError(ModelwardError, ValueError):
    """A model cannot be read structurally (unsupported format, damaged header...)."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor: its name, dtype, shape, and where its bytes are (when they can be mapped).

    `offset` is absolute in `file` (None when the bytes cannot be memory-mapped: compressed,
    strided, inline in a format we do not decode); `member` names the container member
    the bytes belong to, for messages.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: str
    offset: int | None = None
    nbytes: int | None = None
    member: str | None = None


@dataclass(frozen=True)
class GraphNode:
    """One operation (ONNX node, Keras layer).

    `inputs` include names a subgraph reads from the enclosing scope: an If branch that
    reads a tensor depends on it as much as a direct input does. `attributes` are
    `(name, canonical text)` pairs, sorted (subgraphs summarised by their op types).
    """

    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: tuple[tuple[str, str], ...] = ()
    subgraphs: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        op = f"{self.domain}:{self.op_type}" if self.domain else self.op_type
        return f"{self.name or '<unnamed>'} ({op})"


@dataclass
class ModelStructure:
    """A model as the diff sees it; `format` is the scanner name that detected it."""

    path: str
    format: str
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    nodes: list[GraphNode] = field(default_factory=list)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()

    @property
    def is_graph(self) -> bool:
        return bool(self.nodes) or bool(self.outputs)
