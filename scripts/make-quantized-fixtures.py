#!/usr/bin/env python3
"""Quantized fixtures: two small f32 blocks quantized by onnxruntime's own quantizer to the QDQ
form (QuantizeLinear/DequantizeLinear around every MatMul and Conv), with onnxruntime's outputs
on a seeded input. onnx/tests/quantized.rs runs them on Sfumato's devices and compares.

How to run it
-------------
    python3 -m venv /tmp/qvenv
    /tmp/qvenv/bin/pip install -r scripts/quantized-fixtures-requirements.txt
    /tmp/qvenv/bin/python scripts/make-quantized-fixtures.py [--out onnx/tests/data/quantized]
    /tmp/qvenv/bin/python scripts/make-quantized-fixtures.py --full   # ~/.cache/sfumato/quantized-full

The output is committed (about 400 KB); rerunning the script with the pinned versions writes
the same models and inputs (seeded), and outputs equal to onnxruntime's rounding.

What it writes
--------------
For each block, a folder in the ONNX node-test layout:

    NAME/model.onnx                      the QDQ model (opset 17)
    NAME/f32.onnx                        the f32 model it was quantized from
    NAME/test_data_set_0/input_0.pb      the input (TensorProto)
    NAME/test_data_set_0/output_0.pb     onnxruntime's output for the QDQ model
    NAME/basic_output_0.pb               onnxruntime's output for the QDQ model at its basic
                                         optimization level, which leaves the QDQ pairs alone
                                         (each op computed in f32 between them: ONNX's meaning)
    NAME/f32_output_0.pb                 onnxruntime's output for the f32 model it came from
    NAME/info.txt                        the versions, the output's quantization step, and how
                                         far the quantized output is from the f32 one

- `minilm-block`: one encoder layer shaped as MiniLM's (BERT post-LayerNorm: Q, K and V
  projections, 2-head attention, output projection, residual, LayerNorm, a GELU feed-forward,
  residual, LayerNorm), at reduced width (hidden 64, feed-forward 256, 16 tokens).
- `resnet-block`: a ResNet basic block (3x3 conv, ReLU, 3x3 conv, identity residual, ReLU)
  at 32 channels, 14x14.

`--full` writes, in the same layout and not for committing, the blocks at full width for
timing (`sfumato bench precision --int8 DIR`): `bert-layer` (BERT-base's layer: hidden 768,
12 heads, feed-forward 3,072, 128 tokens) and `resnet-bottleneck` (ResNet-50's first
bottleneck, 256 channels at 56x56).

The quantizer: `quantize_static` with QuantFormat.QDQ, uint8 activations, int8 weights per
output channel (per column for a MatMul's weight), MinMax calibration over 16 seeded inputs.
onnxruntime runs the QDQ model with its CPU execution provider and default SessionOptions,
which fuse the QDQ pairs into its integer kernels.
"""

import argparse
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)

OPSET = 17


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def weight(rng, shape, fan_in):
    return rng.standard_normal(shape).astype(np.float32) / np.sqrt(fan_in)


def minilm_block(rng, s=16, e=64, h=2, f=256):
    """One post-LayerNorm encoder layer: `s` tokens, hidden `e`, `h` heads, feed-forward `f`
    (the committed fixture: 16, 64, 2, 256; `--full`: BERT-base's 128, 768, 12, 3072)."""
    d = e // h
    nodes, inits = [], []

    def linear(x, name, n_in, n_out):
        inits.append(init(f"{name}.w", weight(rng, (n_in, n_out), n_in)))
        inits.append(init(f"{name}.b", 0.02 * rng.standard_normal(n_out)))
        nodes.append(helper.make_node("MatMul", [x, f"{name}.w"], [f"{name}.mm"]))
        nodes.append(helper.make_node("Add", [f"{name}.mm", f"{name}.b"], [f"{name}.y"]))
        return f"{name}.y"

    def layer_norm(x, name):
        inits.append(init(f"{name}.g", 1.0 + 0.1 * rng.standard_normal(e)))
        inits.append(init(f"{name}.beta", 0.1 * rng.standard_normal(e)))
        nodes.append(
            helper.make_node(
                "LayerNormalization",
                [x, f"{name}.g", f"{name}.beta"],
                [f"{name}.y"],
                axis=-1,
                epsilon=1e-12,
            )
        )
        return f"{name}.y"

    inits.append(numpy_helper.from_array(np.array([1, s, h, d], dtype=np.int64), "heads"))
    inits.append(numpy_helper.from_array(np.array([1, s, e], dtype=np.int64), "merged"))
    heads = {}
    for p in ["q", "k", "v"]:
        y = linear("x", p, e, e)
        nodes.append(helper.make_node("Reshape", [y, "heads"], [f"{p}.r"]))
        perm = [0, 2, 3, 1] if p == "k" else [0, 2, 1, 3]
        nodes.append(helper.make_node("Transpose", [f"{p}.r"], [f"{p}.t"], perm=perm))
        heads[p] = f"{p}.t"
    inits.append(init("scale", np.array(1.0 / np.sqrt(d))))
    nodes += [
        helper.make_node("MatMul", [heads["q"], heads["k"]], ["scores"]),
        helper.make_node("Mul", ["scores", "scale"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", heads["v"]], ["ctx"]),
        helper.make_node("Transpose", ["ctx"], ["ctx.t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ctx.t", "merged"], ["ctx.m"]),
    ]
    o = linear("ctx.m", "o", e, e)
    nodes.append(helper.make_node("Add", ["x", o], ["res1"]))
    h1 = layer_norm("res1", "ln1")
    up = linear(h1, "up", e, f)
    inits.append(init("half", np.array(0.5)))
    inits.append(init("one", np.array(1.0)))
    inits.append(init("rsqrt2", np.array(1.0 / np.sqrt(2.0))))
    nodes += [
        helper.make_node("Mul", [up, "rsqrt2"], ["g.s"]),
        helper.make_node("Erf", ["g.s"], ["g.e"]),
        helper.make_node("Add", ["g.e", "one"], ["g.p"]),
        helper.make_node("Mul", [up, "g.p"], ["g.m"]),
        helper.make_node("Mul", ["g.m", "half"], ["gelu"]),
    ]
    down = linear("gelu", "down", f, e)
    nodes.append(helper.make_node("Add", [h1, down], ["res2"]))
    out = layer_norm("res2", "ln2")
    nodes.append(helper.make_node("Identity", [out], ["y"]))
    graph = helper.make_graph(
        nodes,
        "minilm_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, s, e])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, s, e])],
        inits,
    )
    return graph, (1, s, e)


def residual_block(rng, name, c, hw, convs):
    """Convs of `convs` ((in, out, kernel) each, padded to keep the size) with a ReLU between
    each two, an identity residual, and a ReLU: `c` channels at `hw` x `hw`."""
    inits, nodes = [], []
    x = "x"
    last = len(convs) - 1
    for i, (cin, cout, k) in enumerate(convs):
        inits.append(init(f"conv{i}.w", weight(rng, (cout, cin, k, k), cin * k * k)))
        inits.append(init(f"conv{i}.b", 0.05 * rng.standard_normal(cout)))
        nodes.append(
            helper.make_node(
                "Conv", [x, f"conv{i}.w", f"conv{i}.b"], [f"conv{i}.y"], pads=[k // 2] * 4
            )
        )
        if i < last:
            nodes.append(helper.make_node("Relu", [f"conv{i}.y"], [f"relu{i}"]))
            x = f"relu{i}"
    nodes.append(helper.make_node("Add", [f"conv{last}.y", "x"], ["sum"]))
    nodes.append(helper.make_node("Relu", ["sum"], ["y"]))
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, hw, hw])],
        inits,
    )
    return graph, (1, c, hw, hw)


def resnet_block(rng):
    """A basic block: 3x3 conv, ReLU, 3x3 conv, identity residual, ReLU; 32 channels, 14x14."""
    return residual_block(rng, "resnet_block", 32, 14, [(32, 32, 3), (32, 32, 3)])


def bottleneck(rng):
    """ResNet-50's first bottleneck at 56x56 (`--full`): 1x1 256->64, ReLU, 3x3 64->64, ReLU,
    1x1 64->256, identity residual, ReLU."""
    return residual_block(
        rng, "resnet_bottleneck", 256, 56, [(256, 64, 1), (64, 64, 3), (64, 256, 1)]
    )


class Reader(CalibrationDataReader):
    def __init__(self, shape, seed):
        rng = np.random.default_rng(seed)
        self.batches = [
            {"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(16)
        ]

    def get_next(self):
        return self.batches.pop() if self.batches else None


def run(path, x, basic=False):
    so = ort.SessionOptions()
    if basic:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--full",
        action="store_true",
        help="full-width blocks for timing (BERT-base's layer at 128 tokens, ResNet-50's first "
        "bottleneck), about 9 MB: not committed",
    )
    args = ap.parse_args()
    if args.full:
        out = args.out or os.path.expanduser("~/.cache/sfumato/quantized-full")
        blocks = [
            ("bert-layer", lambda rng: minilm_block(rng, 128, 768, 12, 3072)),
            ("resnet-bottleneck", bottleneck),
        ]
    else:
        out = args.out or "onnx/tests/data/quantized"
        blocks = [("minilm-block", minilm_block), ("resnet-block", resnet_block)]
    args.out = out
    for seed, (name, build) in enumerate(blocks):
        rng = np.random.default_rng(seed)
        graph, shape = build(rng)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        folder = os.path.join(args.out, name)
        data = os.path.join(folder, "test_data_set_0")
        os.makedirs(data, exist_ok=True)
        f32_path = os.path.join(folder, "f32.onnx")
        onnx.save(model, f32_path)
        q_path = os.path.join(folder, "model.onnx")
        quantize_static(
            f32_path,
            q_path,
            Reader(shape, 100 + seed),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        x = np.random.default_rng(1000 + seed).standard_normal(shape).astype(np.float32)
        y32 = run(f32_path, x)
        yq = run(q_path, x)
        yb = run(q_path, x, basic=True)
        for f in os.listdir(folder):
            if f.endswith("-inferred.onnx") or f.endswith(".tmp"):
                os.remove(os.path.join(folder, f))
        with open(os.path.join(data, "input_0.pb"), "wb") as f:
            f.write(numpy_helper.from_array(x, "x").SerializeToString())
        with open(os.path.join(data, "output_0.pb"), "wb") as f:
            f.write(numpy_helper.from_array(yq, "y").SerializeToString())
        with open(os.path.join(folder, "f32_output_0.pb"), "wb") as f:
            f.write(numpy_helper.from_array(y32, "y").SerializeToString())
        with open(os.path.join(folder, "basic_output_0.pb"), "wb") as f:
            f.write(numpy_helper.from_array(yb, "y").SerializeToString())
        q = onnx.load(q_path)
        ops = sorted({n.op_type for n in q.graph.node})
        # The step of the output: the scale of the last DequantizeLinear before `y`.
        producers = {o: n for n in q.graph.node for o in n.output}
        step = None
        v = "y"
        while v in producers:
            n = producers[v]
            if n.op_type == "DequantizeLinear":
                scale = next(i for i in q.graph.initializer if i.name == n.input[1])
                step = float(numpy_helper.to_array(scale))
                break
            v = n.input[0]
        err = float(np.abs(yq - y32).max())
        err_basic = float(np.abs(yq - yb).max())
        with open(os.path.join(folder, "info.txt"), "w") as f:
            f.write(
                f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}\n"
                f"ops: {' '.join(ops)}\n"
                f"output quantization step: {step}\n"
                f"largest difference of the QDQ output from the f32 output (onnxruntime): {err}\n"
                f"largest difference of the QDQ output from the basic level's: {err_basic}\n"
            )
        print(f"{name}: {os.path.getsize(q_path)} bytes, step {step}, QDQ vs f32 {err:.4g}")


if __name__ == "__main__":
    main()
