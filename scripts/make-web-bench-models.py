"""Writes the ONNX models of the browser benchmark (wasm/www/bench.html) into a folder:

- bert-layer.onnx: a BERT-base encoder layer (hidden 768, 12 heads, FFN 3072, erf GELU, post-norm
  LayerNormalization), input x [1, 128, 768];
- resnet-block.onnx: a ResNet-50 bottleneck (256 -> 64 -> 64 -> 256 channels, 1x1 / 3x3 / 1x1
  convs with bias, ReLUs, the residual add), input x [1, 256, 56, 56].

Weights are seeded random (numpy's default_rng(0)), scaled so activations stay in range; opset
17. Pinned packages: scripts/onnx-node-tests-requirements.txt (onnx, numpy).

    python scripts/make-web-bench-models.py OUT_DIR
"""
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(0)


def weight(name, shape, fan_in, inits):
    w = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    inits.append(numpy_helper.from_array(w, name))
    return name


def const(name, value, inits):
    inits.append(numpy_helper.from_array(np.asarray(value), name))
    return name


def bert_layer(seq=128, hidden=768, heads=12, ffn=3072):
    d = hidden // heads
    inits, nodes = [], []
    n = nodes.append

    def linear(x, name, k, m):
        w = weight(f"{name}.w", (k, m), k, inits)
        b = weight(f"{name}.b", (m,), 10 * k, inits)
        n(helper.make_node("MatMul", [x, w], [f"{name}.mm"]))
        n(helper.make_node("Add", [f"{name}.mm", b], [name]))
        return name

    def heads_of(x, name, perm):
        shape = const(f"{name}.shape", np.array([1, seq, heads, d], np.int64), inits)
        n(helper.make_node("Reshape", [x, shape], [f"{name}.r"]))
        n(helper.make_node("Transpose", [f"{name}.r"], [name], perm=perm))
        return name

    q = heads_of(linear("x", "q", hidden, hidden), "qh", [0, 2, 1, 3])
    k = heads_of(linear("x", "k", hidden, hidden), "kh", [0, 2, 3, 1])
    v = heads_of(linear("x", "v", hidden, hidden), "vh", [0, 2, 1, 3])
    n(helper.make_node("MatMul", [q, k], ["scores"]))
    scale = const("scale", np.array(1.0 / np.sqrt(d), np.float32), inits)
    n(helper.make_node("Mul", ["scores", scale], ["scaled"]))
    n(helper.make_node("Softmax", ["scaled"], ["probs"], axis=-1))
    n(helper.make_node("MatMul", ["probs", v], ["ctx"]))
    n(helper.make_node("Transpose", ["ctx"], ["ctx.t"], perm=[0, 2, 1, 3]))
    merged = const("merged.shape", np.array([1, seq, hidden], np.int64), inits)
    n(helper.make_node("Reshape", ["ctx.t", merged], ["ctx.m"]))
    o = linear("ctx.m", "o", hidden, hidden)
    n(helper.make_node("Add", [o, "x"], ["res1"]))

    def norm(x, name):
        g = const(f"{name}.g", np.ones(hidden, np.float32), inits)
        b = const(f"{name}.b", np.zeros(hidden, np.float32), inits)
        n(helper.make_node("LayerNormalization", [x, g, b], [name], axis=-1, epsilon=1e-12))
        return name

    h = norm("res1", "ln1")
    f1 = linear(h, "ffn1", hidden, ffn)
    sqrt2 = const("sqrt2", np.array(np.sqrt(2.0), np.float32), inits)
    one = const("one", np.array(1.0, np.float32), inits)
    half = const("half", np.array(0.5, np.float32), inits)
    n(helper.make_node("Div", [f1, sqrt2], ["g.div"]))
    n(helper.make_node("Erf", ["g.div"], ["g.erf"]))
    n(helper.make_node("Add", ["g.erf", one], ["g.add"]))
    n(helper.make_node("Mul", [f1, "g.add"], ["g.mul"]))
    n(helper.make_node("Mul", ["g.mul", half], ["gelu"]))
    f2 = linear("gelu", "ffn2", ffn, hidden)
    n(helper.make_node("Add", [f2, h], ["res2"]))
    norm("res2", "y")
    graph = helper.make_graph(
        nodes,
        "bert_layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, hidden])],
        inits,
    )
    return graph


def resnet_block(c=256, mid=64, size=56):
    inits, nodes = [], []
    n = nodes.append

    def conv(x, name, cin, cout, k):
        w = weight(f"{name}.w", (cout, cin, k, k), cin * k * k, inits)
        b = weight(f"{name}.b", (cout,), 10 * cin, inits)
        p = k // 2
        n(helper.make_node("Conv", [x, w, b], [name], kernel_shape=[k, k], pads=[p, p, p, p]))
        return name

    a = conv("x", "c1", c, mid, 1)
    n(helper.make_node("Relu", [a], ["r1"]))
    b = conv("r1", "c2", mid, mid, 3)
    n(helper.make_node("Relu", [b], ["r2"]))
    e = conv("r2", "c3", mid, c, 1)
    n(helper.make_node("Add", [e, "x"], ["sum"]))
    n(helper.make_node("Relu", ["sum"], ["y"]))
    return helper.make_graph(
        nodes,
        "resnet_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, size, size])],
        inits,
    )


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "models")
    out.mkdir(parents=True, exist_ok=True)
    for name, graph in [("bert-layer", bert_layer()), ("resnet-block", resnet_block())]:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, out / f"{name}.onnx")
        print(f"{out / name}.onnx: {len(graph.node)} nodes")


if __name__ == "__main__":
    main()
