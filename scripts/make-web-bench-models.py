"""Writes the ONNX models of the browser benchmark (wasm/www/bench.html) into a folder:

- bert-layer.onnx: a BERT-base encoder layer (hidden 768, 12 heads, FFN 3072, erf GELU, post-norm
  LayerNormalization), input x [1, 128, 768];
- resnet-block.onnx: a ResNet-50 bottleneck (256 -> 64 -> 64 -> 256 channels, 1x1 / 3x3 / 1x1
  convs with bias, ReLUs, the residual add), input x [1, 256, 56, 56];
- minilm-encoder.onnx: the encoder of all-MiniLM-L6-v2 (the zoo's all-minilm-l6-v2): 6 of the
  same layers, hidden 384, 12 heads, FFN 1,536, input x [1, 128, 384].

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


def encoder_layer(nodes, inits, x, y, p="", seq=128, hidden=768, heads=12, ffn=3072):
    """One post-norm BERT encoder layer from value `x` to value `y`; every other name starts
    with `p`."""
    d = hidden // heads
    n = nodes.append

    def linear(x, name, k, m):
        w = weight(f"{p}{name}.w", (k, m), k, inits)
        b = weight(f"{p}{name}.b", (m,), 10 * k, inits)
        n(helper.make_node("MatMul", [x, w], [f"{p}{name}.mm"]))
        n(helper.make_node("Add", [f"{p}{name}.mm", b], [f"{p}{name}"]))
        return f"{p}{name}"

    def heads_of(x, name, perm):
        shape = const(f"{p}{name}.shape", np.array([1, seq, heads, d], np.int64), inits)
        n(helper.make_node("Reshape", [x, shape], [f"{p}{name}.r"]))
        n(helper.make_node("Transpose", [f"{p}{name}.r"], [f"{p}{name}"], perm=perm))
        return f"{p}{name}"

    q = heads_of(linear(x, "q", hidden, hidden), "qh", [0, 2, 1, 3])
    k = heads_of(linear(x, "k", hidden, hidden), "kh", [0, 2, 3, 1])
    v = heads_of(linear(x, "v", hidden, hidden), "vh", [0, 2, 1, 3])
    n(helper.make_node("MatMul", [q, k], [f"{p}scores"]))
    scale = const(f"{p}scale", np.array(1.0 / np.sqrt(d), np.float32), inits)
    n(helper.make_node("Mul", [f"{p}scores", scale], [f"{p}scaled"]))
    n(helper.make_node("Softmax", [f"{p}scaled"], [f"{p}probs"], axis=-1))
    n(helper.make_node("MatMul", [f"{p}probs", v], [f"{p}ctx"]))
    n(helper.make_node("Transpose", [f"{p}ctx"], [f"{p}ctx.t"], perm=[0, 2, 1, 3]))
    merged = const(f"{p}merged.shape", np.array([1, seq, hidden], np.int64), inits)
    n(helper.make_node("Reshape", [f"{p}ctx.t", merged], [f"{p}ctx.m"]))
    o = linear(f"{p}ctx.m", "o", hidden, hidden)
    n(helper.make_node("Add", [o, x], [f"{p}res1"]))

    def norm(x, name):
        g = const(f"{name}.g", np.ones(hidden, np.float32), inits)
        b = const(f"{name}.b", np.zeros(hidden, np.float32), inits)
        n(helper.make_node("LayerNormalization", [x, g, b], [name], axis=-1, epsilon=1e-12))
        return name

    h = norm(f"{p}res1", f"{p}ln1")
    f1 = linear(h, "ffn1", hidden, ffn)
    sqrt2 = const(f"{p}sqrt2", np.array(np.sqrt(2.0), np.float32), inits)
    one = const(f"{p}one", np.array(1.0, np.float32), inits)
    half = const(f"{p}half", np.array(0.5, np.float32), inits)
    n(helper.make_node("Div", [f1, sqrt2], [f"{p}g.div"]))
    n(helper.make_node("Erf", [f"{p}g.div"], [f"{p}g.erf"]))
    n(helper.make_node("Add", [f"{p}g.erf", one], [f"{p}g.add"]))
    n(helper.make_node("Mul", [f1, f"{p}g.add"], [f"{p}g.mul"]))
    n(helper.make_node("Mul", [f"{p}g.mul", half], [f"{p}gelu"]))
    f2 = linear(f"{p}gelu", "ffn2", ffn, hidden)
    n(helper.make_node("Add", [f2, h], [f"{p}res2"]))
    norm(f"{p}res2", y)


def encoder(name, layers, seq=128, hidden=768, heads=12, ffn=3072):
    """`layers` encoder layers from x [1, seq, hidden] to y."""
    inits, nodes = [], []
    for i in range(layers):
        x = "x" if i == 0 else f"h{i}"
        y = "y" if i == layers - 1 else f"h{i + 1}"
        p = "" if layers == 1 else f"l{i}."
        encoder_layer(nodes, inits, x, y, p, seq, hidden, heads, ffn)
    return helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, hidden])],
        inits,
    )


def bert_layer():
    return encoder("bert_layer", 1)


def minilm_encoder():
    # all-MiniLM-L6-v2's encoder (the zoo's all-minilm-l6-v2): 6 layers, hidden 384, 12 heads,
    # FFN 1,536; seq 128.
    return encoder("minilm_encoder", 6, hidden=384, heads=12, ffn=1536)


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
    for name, graph in [
        ("bert-layer", bert_layer()),
        ("resnet-block", resnet_block()),
        ("minilm-encoder", minilm_encoder()),
    ]:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, out / f"{name}.onnx")
        print(f"{out / name}.onnx: {len(graph.node)} nodes")


if __name__ == "__main__":
    main()
