"""The one ONNX graph a tail serves, what goes in and comes out of it, and the conversion of the two graphs
tails kept before it. ``onnx`` only (no torch): serving and the bundle migration use it.

The serving graph takes the photos' centre crops (``input``, N rows: the plain network's labels come from
them) and any number of other crops (``views``, M rows: the mirror, the whole photo, ...), all normalised
N x 3 x S x S; both go through the frozen part up to the cut together, once. It gives

* ``logits``, ``embedding``: the plain network's ImageNet logits and pooled embedding of the ``input`` rows
  (the frozen rest after the cut runs on those rows only);
* ``features``: the tuned tail's pooled features of the ``input`` rows, then of the ``views`` rows (N + M).

Either input may have no rows: ``views`` empty serves the centre crop alone, ``input`` empty embeds with the
tail alone (no labels asked, no frozen rest run).
"""

from __future__ import annotations

GRAPH_INPUTS = ("input", "views")
GRAPH_OUTPUTS = ("logits", "embedding", "features")
TWO_GRAPHS = ("joint", "tuned")
"""What tails kept before the one graph: ``joint`` (input -> logits, embedding, features of the centre crop) and
``tuned`` (input -> features), run one after the other (``one_graph_from_two``)."""


def one_graph_from_two(joint: bytes, tuned: bytes) -> bytes:
    """The serving graph (module docstring) made of a tail's two old graphs, without torch: ``joint`` reads
    ``input``, ``tuned`` reads ``views``, and their features are concatenated in that order. The frozen part's
    weights stay twice in it (as they were in the two graphs), but each photo row still runs it once."""
    import onnx
    from onnx import compose, helper

    first = compose.add_prefix(onnx.load_from_string(joint), "joint/")
    second = compose.add_prefix(onnx.load_from_string(tuned), "tuned/")
    merged = compose.merge_models(first, second, io_map=[])
    graph = merged.graph
    renames = {"joint/input": "input", "tuned/input": "views", "joint/logits": "logits",
               "joint/embedding": "embedding"}
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    for value in list(graph.input) + list(graph.output):
        value.name = renames.get(value.name, value.name)
    next(value for value in graph.input if value.name == "views").type.tensor_type.shape.dim[0].dim_param = "views"
    features = [next(value for value in graph.output if value.name == name)
                for name in ("joint/features", "tuned/features")]  # the centre crops' rows first
    graph.node.append(helper.make_node("Concat", [value.name for value in features], ["features"], axis=0,
                                       name="features/concat"))
    kept = [value for value in graph.output if value not in features]
    output = onnx.ValueInfoProto()
    output.CopyFrom(features[0])
    output.name = "features"
    output.type.tensor_type.shape.dim[0].dim_param = "rows"
    del graph.output[:]
    graph.output.extend(kept + [output])
    onnx.checker.check_model(merged)
    return merged.SerializeToString()
