#!/usr/bin/env python3
"""The CPU peer for the zoo's lavapipe figures: onnxruntime's CPU execution provider, with its
default SessionOptions, on the zoo's models at the zoo's lavapipe configurations.

How to run it
-------------
    python3 -m venv /tmp/ortvenv
    /tmp/ortvenv/bin/pip install -r scripts/bench-onnxruntime-requirements.txt
    /tmp/ortvenv/bin/python scripts/bench-onnxruntime.py \\
        --yolov8n ~/.cache/sfumato/weights/yolov8n-nudenet/320n.onnx \\
        --json /tmp/ort.json [--save-onnx /tmp/ort-models] [--runs 3] [--quick] [--wait-idle 600] \\
        [--models resnet50,bert-base]

`--quick` leaves out ResNet-50 at batch 32 (the one long case). `--models` picks among
resnet50, bert-large, bert-base, vit-b16, yolov5s, yolov8n (yolov8n needs `--yolov8n PATH`; without
the path it is skipped, and said so). `--save-onnx DIR` keeps the built files, DIR/resnet50.onnx,
DIR/bert-large.onnx, ..., so that Sfumato runs the very same graphs through its importer:

    sfumato run DIR/resnet50.onnx                       # batch is a symbolic dim, 1 unless bound
    sfumato run DIR/resnet50.onnx --dim batch=32
    sfumato run DIR/bert-large.onnx --input input_ids=DIR/bert-large.input_ids.npy \
        --input attention_mask=DIR/bert-large.attention_mask.npy \
        --input token_type_ids=DIR/bert-large.token_type_ids.npy

The batch-1 inputs timed here are saved beside the files as DIR/<model>.<input>.npy. BERT needs
them (or `--dim seq=128` and inputs of its own): `sfumato run` otherwise seeds int64 inputs in
[-8, 8), and token type -8 lies outside the 2-row table; batch and seq are symbolic dims, bound
by the given inputs' shapes.
A full run builds about 2.2 GB of weights (bert-large alone is 1.34 GB), peaks near 6 GB of
memory and takes about a minute on a 2-core AMD EPYC, mostly building and loading bert-large.
The times are only as quiet as the machine: onnxruntime's two threads share two cores with
whatever else runs (a cargo build beside it made them 2-3x slower), so the output says how much
CPU other processes took during each case's timed runs, and the JSON gives each case's fastest
run beside its median; `--wait-idle SECONDS` waits, before each case, for a quiet moment.

What it does
------------
1. Builds each model as an ONNX graph with `onnx.helper` (opset 17), the standard architecture
   at full size, weights seeded (`numpy.random.default_rng(0)`) and fan-in scaled. Ops are the
   ones PyTorch's exporter writes: MatMul+Add for linears, Reshape/Transpose for attention heads,
   exact GELU as Div/Erf/Add/Mul/Mul, SiLU as Sigmoid+Mul, BatchNorm folded into the convolutions
   (as `torch.onnx.export` of an eval-mode model leaves it), LayerNormalization (opset 17).
   - resnet50: torchvision ResNet-50 v1.5 (stride on the 3x3), input `pixels` [batch,3,224,224],
     output `logits` [batch,1000] (GlobalAveragePool, Flatten, Gemm 2048->1000).
   - bert-large / bert-base: 24x1024 (16 heads, FFN 4096) / 12x768 (12 heads, FFN 3072), post-LN,
     vocabulary 30522, 512 positions, 2 token types; inputs `input_ids`, `attention_mask`,
     `token_type_ids` int64 [batch,seq]; the additive mask (1 - mask) * -10000 broadcast over
     heads; SQuAD head Linear hidden->2 split into `start_logits`, `end_logits` [batch,seq].
   - vit-b16: torchvision ViT-B/16: patch Conv 16/16 3->768, CLS token (Expand), position
     embeddings [1,197,768], 12 pre-LN layers (12 heads, MLP 3072, LayerNorm eps 1e-6), final
     LayerNorm, CLS row, classifier 768->1000; input `pixels` [batch,3,224,224].
   - yolov5s: Ultralytics v6 `yolov5s.yaml` (depth 0.33, width 0.50, 80 classes): Conv
     (Conv2d+BN+SiLU), C3, SPPF, nearest 2x Resize, Concat, and the Detect head with its box
     decoding as Ultralytics exports it (sigmoid, grid and anchor arithmetic), input `pixels`
     [batch,3,640,640], output `predictions` [batch,25200,85]; no NMS, as in `sfumato bench zoo`.
   - yolov8n: the real file given by `--yolov8n`, input `images` [1,3,H,W] timed at 320 and 640.
   Weights are N(0, gain^2 / fan_in) (gain sqrt 2 for convolutions, 1 for linears and the ResNet
   shortcut convs), biases N(0, 0.02^2), embeddings N(0, 0.02^2), LayerNorm 1 and 0. Two gains
   keep the random networks' outputs informative rather than collapsed: 0.5 on each bottleneck's
   last ResNet conv, 0.3 on BERT's projections into the residual stream (at 1.0 bert-large's 24
   post-LN layers average the tokens together and every position gets the same logits). Each
   built model is checked: onnx.checker, the output shapes expected, all outputs finite (a
   nearly constant output is warned about). Inputs: pixels N(0, 1) (YOLO: U[0, 1)),
   input_ids uniform over the vocabulary, attention_mask all ones, token_type_ids all zeros.
2. Times each with `onnxruntime.InferenceSession(path, SessionOptions(),
   providers=["CPUExecutionProvider"])`: defaults throughout (graph optimization level ALL,
   sequential execution, intra-op threads 0 = one per physical core; the N in the output is
   counted, the threads the first session added to the process plus the calling one). One
   warm-up run, then the median of `--runs` runs (wall time of `session.run`, inputs already in
   numpy).
3. Prints a Markdown table (model, metric, value, unit) and, with `--json FILE`, writes
   {"peer": "onnxruntime X.Y.Z CPUExecutionProvider (defaults, N threads)", "cpu": lscpu's model
   name, "models": [{"name", "metric", "value", "unit", "conditions", "median_ms", "min_ms",
   "runs", "others_cpu_share"}], ...}; name, metric and conditions are worded as `sfumato bench
   zoo` words its rows. others_cpu_share is the CPU time other processes took during the case's
   timed runs over the CPUs' time (from /proc/stat less this process's own): 0 on a quiet machine.

The configurations are zoo/configs/*/lavapipe.toml's (batch 1, f32; BERT seq 128; YOLOv5s 640),
plus ResNet-50 at batch 32, the table's batch on other targets.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # opset 17's IR version, which every onnxruntime since 1.12 reads

ALL_MODELS = ["resnet50", "bert-large", "bert-base", "vit-b16", "yolov5s", "yolov8n"]


class Builder:
    """Nodes, initializers and unique names for one graph; weights from one seeded generator."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.count = {}
        self.consts = {}

    def name(self, base):
        n = self.count.get(base, 0)
        self.count[base] = n + 1
        return f"{base}_{n}"

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def weight(self, name, shape, fan_in, gain=1.0):
        std = np.float32(gain / np.sqrt(fan_in))
        return self.init(name, self.rng.standard_normal(shape, dtype=np.float32) * std)

    def normal(self, name, shape, std):
        return self.init(name, self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std))

    def const(self, arr):
        """A shared small constant (shapes, axes, scalars)."""
        arr = np.asarray(arr)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self.consts:
            self.consts[key] = self.init(self.name("const"), arr)
        return self.consts[key]

    def i64(self, values):
        return self.const(np.array(values, dtype=np.int64))

    def f32(self, value):
        return self.const(np.array(value, dtype=np.float32))

    def op(self, op_type, inputs, n_out=1, **attrs):
        base = self.name(op_type.lower())
        outs = [base] if n_out == 1 else [f"{base}:{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=base, **attrs))
        return outs[0] if n_out == 1 else outs

    def model(self, name, inputs, outputs):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sfumato bench-onnxruntime.py")
        m.ir_version = IR_VERSION
        return m

    # -- layers as PyTorch exports them ---------------------------------------------------
    def conv(self, x, c_in, c_out, k, stride=1, pad=None, gain=np.sqrt(2.0), groups=1):
        """Conv2d with BatchNorm folded in (a bias per output channel)."""
        pad = k // 2 if pad is None else pad
        prefix = self.name("conv")
        w = self.weight(prefix + ".weight", (c_out, c_in // groups, k, k), c_in // groups * k * k, gain)
        b = self.normal(prefix + ".bias", (c_out,), 0.02)
        return self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride],
                       pads=[pad] * 4, dilations=[1, 1], group=groups)

    def linear(self, x, d_in, d_out, prefix, gain=1.0):
        """MatMul by the transposed weight [in, out], then Add the bias."""
        w = self.weight(prefix + ".weight", (d_in, d_out), d_in, gain)
        b = self.normal(prefix + ".bias", (d_out,), 0.02)
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def layer_norm(self, x, d, eps, prefix):
        g = self.init(prefix + ".weight", np.ones(d, dtype=np.float32))
        b = self.init(prefix + ".bias", np.zeros(d, dtype=np.float32))
        return self.op("LayerNormalization", [x, g, b], axis=-1, epsilon=eps)

    def gelu(self, x):
        """x * 0.5 * (1 + erf(x / sqrt 2)), as HF and torchvision's nn.GELU() export at opset 17."""
        e = self.op("Erf", [self.op("Div", [x, self.f32(np.sqrt(2.0))])])
        return self.op("Mul", [self.op("Mul", [x, self.op("Add", [e, self.f32(1.0)])]), self.f32(0.5)])

    def attention(self, x, hidden, heads, prefix, mask=None, out_gain=1.0):
        """Multi-head self-attention on x [B,S,hidden], heads split by Reshape/Transpose."""
        d = hidden // heads
        q = self.linear(x, hidden, hidden, prefix + ".query")
        k = self.linear(x, hidden, hidden, prefix + ".key")
        v = self.linear(x, hidden, hidden, prefix + ".value")
        split = self.i64([0, 0, heads, d])
        q = self.op("Transpose", [self.op("Reshape", [q, split])], perm=[0, 2, 1, 3])
        k = self.op("Transpose", [self.op("Reshape", [k, split])], perm=[0, 2, 3, 1])
        v = self.op("Transpose", [self.op("Reshape", [v, split])], perm=[0, 2, 1, 3])
        s = self.op("Div", [self.op("MatMul", [q, k]), self.f32(np.sqrt(d))])
        if mask is not None:
            s = self.op("Add", [s, mask])
        p = self.op("Softmax", [s], axis=-1)
        c = self.op("Transpose", [self.op("MatMul", [p, v])], perm=[0, 2, 1, 3])
        c = self.op("Reshape", [c, self.i64([0, 0, hidden])])
        return self.linear(c, hidden, hidden, prefix + ".output", out_gain)


def tensor_info(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


# -- ResNet-50 --------------------------------------------------------------------------------
def build_resnet50():
    b = Builder()
    x = b.op("Relu", [b.conv("pixels", 3, 64, 7, stride=2, pad=3)])
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c_in = 64
    for planes, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            s = stride if i == 0 else 1
            y = b.op("Relu", [b.conv(x, c_in, planes, 1)])
            y = b.op("Relu", [b.conv(y, planes, planes, 3, stride=s)])  # v1.5: stride on the 3x3
            y = b.conv(y, planes, planes * 4, 1, gain=0.5)  # small last conv keeps residuals tame
            short = b.conv(x, c_in, planes * 4, 1, stride=s, pad=0, gain=1.0) if i == 0 else x
            x = b.op("Relu", [b.op("Add", [y, short])])
            c_in = planes * 4
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    w = b.weight("fc.weight", (1000, 2048), 2048)
    bias = b.normal("fc.bias", (1000,), 0.02)
    b.nodes.append(helper.make_node("Gemm", [x, w, bias], ["logits"], name="fc", alpha=1.0,
                                    beta=1.0, transB=1))
    return b.model("resnet50", [tensor_info("pixels", TensorProto.FLOAT, ["batch", 3, 224, 224])],
                   [tensor_info("logits", TensorProto.FLOAT, ["batch", 1000])])


# Gain of the projections that write into the residual stream (attention output, second FFN
# linear). At 1.0 a random post-LN stack of 24 layers averages its tokens together (attention is
# near uniform), and bert-large's logits come out the same at every position; 0.3 keeps them apart.
RES_GAIN = 0.3


# -- BERT ---------------------------------------------------------------------------------------
def build_bert(layers, hidden, heads, ffn, name, res_gain=RES_GAIN):
    b = Builder()
    vocab, max_pos, types, eps = 30522, 512, 2, 1e-12
    word = b.normal("embeddings.word_embeddings.weight", (vocab, hidden), 0.02)
    pos = b.normal("embeddings.position_embeddings.weight", (max_pos, hidden), 0.02)
    tok = b.normal("embeddings.token_type_embeddings.weight", (types, hidden), 0.02)
    pos_ids = b.init("embeddings.position_ids", np.arange(max_pos, dtype=np.int64)[None, :])
    # position_ids[:, :seq], seq read from input_ids' shape, as HF exports it
    seq = b.op("Slice", [b.op("Shape", ["input_ids"]), b.i64([1]), b.i64([2])])
    ids = b.op("Slice", [pos_ids, b.i64([0]), seq, b.i64([1])])
    x = b.op("Add", [b.op("Gather", [word, "input_ids"], axis=0),
                     b.op("Gather", [tok, "token_type_ids"], axis=0)])
    x = b.op("Add", [x, b.op("Gather", [pos, ids], axis=0)])
    x = b.layer_norm(x, hidden, eps, "embeddings.LayerNorm")
    # extended mask: (1 - mask[:, None, None, :]) * -10000
    m = b.op("Unsqueeze", [b.op("Cast", ["attention_mask"], to=TensorProto.FLOAT), b.i64([1, 2])])
    mask = b.op("Mul", [b.op("Sub", [b.f32(1.0), m]), b.f32(-10000.0)])
    for i in range(layers):
        p = f"encoder.layer.{i}"
        a = b.attention(x, hidden, heads, p + ".attention", mask, res_gain)
        x = b.layer_norm(b.op("Add", [a, x]), hidden, eps, p + ".attention.LayerNorm")
        h = b.gelu(b.linear(x, hidden, ffn, p + ".intermediate.dense"))
        h = b.linear(h, ffn, hidden, p + ".output.dense", res_gain)
        x = b.layer_norm(b.op("Add", [h, x]), hidden, eps, p + ".output.LayerNorm")
    logits = b.linear(x, hidden, 2, "qa_outputs")
    start, end = b.op("Split", [logits, b.i64([1, 1])], n_out=2, axis=-1)
    b.nodes.append(helper.make_node("Squeeze", [start, b.i64([-1])], ["start_logits"]))
    b.nodes.append(helper.make_node("Squeeze", [end, b.i64([-1])], ["end_logits"]))
    ints = [tensor_info(n, TensorProto.INT64, ["batch", "seq"])
            for n in ("input_ids", "attention_mask", "token_type_ids")]
    outs = [tensor_info(n, TensorProto.FLOAT, ["batch", "seq"]) for n in ("start_logits", "end_logits")]
    return b.model(name, ints, outs)


# -- ViT-B/16 -----------------------------------------------------------------------------------
def build_vit_b16():
    b = Builder()
    hidden, heads, mlp, layers, eps, patches = 768, 12, 3072, 12, 1e-6, 196
    w = b.weight("conv_proj.weight", (hidden, 3, 16, 16), 3 * 16 * 16)
    bias = b.normal("conv_proj.bias", (hidden,), 0.02)
    x = b.op("Conv", ["pixels", w, bias], kernel_shape=[16, 16], strides=[16, 16])
    x = b.op("Transpose", [b.op("Reshape", [x, b.i64([0, hidden, patches])])], perm=[0, 2, 1])
    cls = b.normal("class_token", (1, 1, hidden), 0.02)
    batch = b.op("Slice", [b.op("Shape", ["pixels"]), b.i64([0]), b.i64([1])])
    shape = b.op("Concat", [batch, b.i64([1, hidden])], axis=0)
    x = b.op("Concat", [b.op("Expand", [cls, shape]), x], axis=1)
    x = b.op("Add", [x, b.normal("encoder.pos_embedding", (1, patches + 1, hidden), 0.02)])
    for i in range(layers):
        p = f"encoder.layers.{i}"
        x = b.op("Add", [x, b.attention(b.layer_norm(x, hidden, eps, p + ".ln_1"), hidden, heads,
                                        p + ".self_attention")])
        h = b.gelu(b.linear(b.layer_norm(x, hidden, eps, p + ".ln_2"), hidden, mlp, p + ".mlp.0"))
        x = b.op("Add", [x, b.linear(h, mlp, hidden, p + ".mlp.3")])
    x = b.layer_norm(x, hidden, eps, "encoder.ln")
    x = b.op("Gather", [x, b.const(np.array(0, dtype=np.int64))], axis=1)  # x[:, 0]
    w = b.weight("heads.head.weight", (hidden, 1000), hidden)
    bias = b.normal("heads.head.bias", (1000,), 0.02)
    b.nodes.append(helper.make_node("Add", [b.op("MatMul", [x, w]), bias], ["logits"]))
    return b.model("vit-b16", [tensor_info("pixels", TensorProto.FLOAT, ["batch", 3, 224, 224])],
                   [tensor_info("logits", TensorProto.FLOAT, ["batch", 1000])])


# -- YOLOv5s (v6) -------------------------------------------------------------------------------
def build_yolov5s(size=640, nc=80):
    b = Builder()

    def conv(x, c1, c2, k, s=1, p=None):  # Conv2d(bias=False) + BN(eps 1e-3), folded; SiLU
        y = b.conv(x, c1, c2, k, stride=s, pad=p)
        return b.op("Mul", [y, b.op("Sigmoid", [y])])

    def c3(x, c1, c2, n, shortcut):
        c_ = c2 // 2
        y = conv(x, c1, c_, 1)
        for _ in range(n):
            z = conv(conv(y, c_, c_, 1), c_, c_, 3)
            y = b.op("Add", [y, z]) if shortcut else z
        y = b.op("Concat", [y, conv(x, c1, c_, 1)], axis=1)
        return conv(y, 2 * c_, c2, 1)

    def sppf(x, c1, c2, k=5):
        c_ = c1 // 2
        x = conv(x, c1, c_, 1)
        ys = [x]
        for _ in range(3):
            ys.append(b.op("MaxPool", [ys[-1]], kernel_shape=[k, k], strides=[1, 1], pads=[k // 2] * 4))
        return conv(b.op("Concat", ys, axis=1), c_ * 4, c2, 1)

    def upsample(x):
        return b.op("Resize", [x, "", b.f32([1.0, 1.0, 2.0, 2.0])], mode="nearest",
                    coordinate_transformation_mode="asymmetric", nearest_mode="floor")

    # yolov5s.yaml after parse_model: depth 0.33 (3,6,9 -> 1,2,3), width 0.5
    L = []
    L.append(conv("pixels", 3, 32, 6, 2, 2))        # 0  P1/2
    L.append(conv(L[-1], 32, 64, 3, 2))             # 1  P2/4
    L.append(c3(L[-1], 64, 64, 1, True))            # 2
    L.append(conv(L[-1], 64, 128, 3, 2))            # 3  P3/8
    L.append(c3(L[-1], 128, 128, 2, True))          # 4
    L.append(conv(L[-1], 128, 256, 3, 2))           # 5  P4/16
    L.append(c3(L[-1], 256, 256, 3, True))          # 6
    L.append(conv(L[-1], 256, 512, 3, 2))           # 7  P5/32
    L.append(c3(L[-1], 512, 512, 1, True))          # 8
    L.append(sppf(L[-1], 512, 512, 5))              # 9
    L.append(conv(L[-1], 512, 256, 1, 1))           # 10
    L.append(upsample(L[-1]))                       # 11
    L.append(b.op("Concat", [L[-1], L[6]], axis=1))   # 12
    L.append(c3(L[-1], 512, 256, 1, False))         # 13
    L.append(conv(L[-1], 256, 128, 1, 1))           # 14
    L.append(upsample(L[-1]))                       # 15
    L.append(b.op("Concat", [L[-1], L[4]], axis=1))   # 16
    L.append(c3(L[-1], 256, 128, 1, False))         # 17 (P3/8-small)
    L.append(conv(L[-1], 128, 128, 3, 2))           # 18
    L.append(b.op("Concat", [L[-1], L[14]], axis=1))  # 19
    L.append(c3(L[-1], 256, 256, 1, False))         # 20 (P4/16-medium)
    L.append(conv(L[-1], 256, 256, 3, 2))           # 21
    L.append(b.op("Concat", [L[-1], L[10]], axis=1))  # 22
    L.append(c3(L[-1], 512, 512, 1, False))         # 23 (P5/32-large)
    # Detect, export mode: view, permute, sigmoid, split (2, 2, nc+1), decode, cat, view
    anchors = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
    na, no = 3, nc + 5
    outs = []
    for level, (src, ch, stride) in enumerate(zip([L[17], L[20], L[23]], [128, 256, 512], [8, 16, 32])):
        w = b.weight(f"model.24.m.{level}.weight", (na * no, ch, 1, 1), ch)
        bias = b.normal(f"model.24.m.{level}.bias", (na * no,), 0.02)
        y = b.op("Conv", [src, w, bias], kernel_shape=[1, 1])
        ny = nx = size // stride
        y = b.op("Reshape", [y, b.i64([-1, na, no, ny, nx])])
        y = b.op("Sigmoid", [b.op("Transpose", [y], perm=[0, 1, 3, 4, 2])])
        xy, wh, conf = b.op("Split", [y, b.i64([2, 2, nc + 1])], n_out=3, axis=4)
        yv, xv = np.meshgrid(np.arange(ny, dtype=np.float32), np.arange(nx, dtype=np.float32),
                             indexing="ij")
        grid = (np.stack((xv, yv), 2)[None, None].repeat(na, 1) - 0.5).astype(np.float32)
        agrid = np.array(anchors[level], dtype=np.float32).reshape(1, na, 1, 1, 2)
        g = b.init(f"model.24.grid.{level}", grid)
        ag = b.init(f"model.24.anchor_grid.{level}", agrid)
        xy = b.op("Mul", [b.op("Add", [b.op("Mul", [xy, b.f32(2.0)]), g]), b.f32(float(stride))])
        wh = b.op("Mul", [b.op("Pow", [b.op("Mul", [wh, b.f32(2.0)]), b.f32(2.0)]), ag])
        y = b.op("Concat", [xy, wh, conf], axis=4)
        outs.append(b.op("Reshape", [y, b.i64([-1, na * ny * nx, no])]))
    b.nodes.append(helper.make_node("Concat", outs, ["predictions"], axis=1))
    n = 3 * sum((size // s) ** 2 for s in (8, 16, 32))
    return b.model("yolov5s", [tensor_info("pixels", TensorProto.FLOAT, ["batch", 3, size, size])],
                   [tensor_info("predictions", TensorProto.FLOAT, ["batch", n, no])])


# -- timing --------------------------------------------------------------------------------------
def cpu_model_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def busy_cpu_seconds():
    """CPU seconds all processes have spent busy (not idle, not waiting on I/O), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds():
    t = os.times()
    return t.user + t.system


def wait_idle(limit_s, window_s=5.0, threshold=0.10):
    """Wait, up to limit_s seconds, for a window_s-second window in which other processes use
    under `threshold` of the CPUs; return their share in the last window (None: no /proc/stat)."""
    end = time.monotonic() + limit_s
    while True:
        busy0, own0, t0 = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        time.sleep(window_s)
        busy1, own1, wall = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter() - t0
        if busy0 is None or busy1 is None:
            return None
        share = max((busy1 - busy0) - (own1 - own0), 0.0) / (wall * (os.cpu_count() or 1))
        if share < threshold or time.monotonic() >= end:
            return share


def thread_count():
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


class Timer:
    def __init__(self, runs, ort, wait_idle_s=0):
        self.runs = runs
        self.ort = ort
        self.wait_idle_s = wait_idle_s
        self.threads = None  # intra-op threads seen at the first session (workers + the caller)

    def session(self, path):
        before = thread_count()
        sess = self.ort.InferenceSession(path, self.ort.SessionOptions(),
                                         providers=["CPUExecutionProvider"])
        after = thread_count()
        if self.threads is None and before is not None and after is not None:
            self.threads = after - before + 1
        return sess

    def time(self, sess, feeds):
        """Median of the timed runs after one warm-up; also how busy the rest of the machine was
        meanwhile (self.last_others: other processes' CPU time over the CPUs' time, 0 to 1)."""
        outs = sess.run(None, feeds)  # warm-up
        if self.wait_idle_s > 0:
            share = wait_idle(self.wait_idle_s)
            if share is not None and share >= 0.10:
                print(f"warning: no quiet window in {self.wait_idle_s} s (other processes "
                      f"{share:.0%} of the CPUs); timing anyway", file=sys.stderr)
        times = []
        busy0, own0, wall0 = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        for _ in range(self.runs):
            t = time.perf_counter()
            sess.run(None, feeds)
            times.append(time.perf_counter() - t)
        busy1, own1, wall = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter() - wall0
        self.last_min = min(times)
        self.last_others = None
        if busy0 is not None and busy1 is not None and wall > 0:
            others = (busy1 - busy0) - (own1 - own0)
            self.last_others = min(max(others / (wall * (os.cpu_count() or 1)), 0.0), 1.0)
        return statistics.median(times), outs


def check_outputs(name, sess, outs, expected):
    names = [o.name for o in sess.get_outputs()]
    for n, o in zip(names, outs):
        if n in expected and tuple(o.shape) != tuple(expected[n]):
            raise SystemExit(f"{name}: output {n} has shape {o.shape}, expected {expected[n]}")
        if not np.all(np.isfinite(o)):
            raise SystemExit(f"{name}: output {n} is not all finite")
        if o.size > 1 and o.std() < 1e-3:
            print(f"warning: {name}: output {n} is nearly constant (std {o.std():.3g})", file=sys.stderr)
    desc = ", ".join(f"{n} {list(o.shape)} in [{o.min():.3g}, {o.max():.3g}] std {o.std():.3g}"
                     for n, o in zip(names, outs))
    print(f"check {name}: {desc}: shapes as expected, all finite", file=sys.stderr)


def pixels(rng, batch, size, unit=False):
    shape = (batch, 3, size, size)
    if unit:
        return rng.random(shape, dtype=np.float32)
    return rng.standard_normal(shape, dtype=np.float32)


def bert_feeds(rng, batch, seq):
    return {
        "input_ids": rng.integers(0, 30522, (batch, seq), dtype=np.int64),
        "attention_mask": np.ones((batch, seq), dtype=np.int64),
        "token_type_ids": np.zeros((batch, seq), dtype=np.int64),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="timed runs per case (median), after 1 warm-up")
    ap.add_argument("--quick", action="store_true", help="leave out ResNet-50 at batch 32")
    ap.add_argument("--models", default=",".join(ALL_MODELS), help="comma-separated: " + ",".join(ALL_MODELS))
    ap.add_argument("--yolov8n", metavar="PATH", help="the YOLOv8n .onnx file (input images [1,3,H,W])")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--save-onnx", metavar="DIR", help="keep the built models as DIR/<model>.onnx")
    ap.add_argument("--wait-idle", metavar="SECONDS", type=float, default=0,
                    help="before each case's timed runs, wait up to SECONDS for 5 s in which other "
                    "processes use under 10%% of the CPUs (a shared machine); default 0: don't wait")
    args = ap.parse_args()

    import onnxruntime as ort

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in ALL_MODELS:
            ap.error(f"unknown model {m!r}; known: {', '.join(ALL_MODELS)}")
    skipped = []
    if "yolov8n" in models and not args.yolov8n:
        skipped.append("yolov8n (no --yolov8n PATH)")
        models.remove("yolov8n")
    if args.quick and "resnet50" in models:
        skipped.append("resnet50 batch 32 (--quick)")

    out_dir = args.save_onnx or tempfile.mkdtemp(prefix="bench-ort-")
    os.makedirs(out_dir, exist_ok=True)
    timer = Timer(args.runs, ort, args.wait_idle)
    rng = np.random.default_rng(1)
    rows = []

    def add(name, metric, median_s, per_run, unit, conditions):
        value = per_run / median_s if unit in ("img/s", "FPS") else median_s * 1e3
        rows.append({"name": name, "metric": metric, "value": round(value, 3 if value < 10 else 2),
                     "unit": unit, "conditions": conditions, "median_ms": round(median_s * 1e3, 2),
                     "min_ms": round(timer.last_min * 1e3, 2), "runs": args.runs,
                     "others_cpu_share": None if timer.last_others is None else round(timer.last_others, 2)})
        busy = "" if timer.last_others is None else f", other processes {timer.last_others:.0%} of the CPUs"
        print(f"{name} {metric}: {rows[-1]['value']} {unit} (median {median_s * 1e3:.1f} ms, "
              f"fastest {timer.last_min * 1e3:.1f} ms{busy})", file=sys.stderr)

    def save_inputs(name, feeds):
        """With --save-onnx, the batch-1 inputs as DIR/<model>.<input>.npy, for `sfumato run
        --input`."""
        if args.save_onnx:
            for k, v in feeds.items():
                np.save(os.path.join(out_dir, f"{name}.{k}.npy"), v)
        return feeds

    builders = {
        "resnet50": build_resnet50,
        "bert-large": lambda: build_bert(24, 1024, 16, 4096, "bert-large"),
        "bert-base": lambda: build_bert(12, 768, 12, 3072, "bert-base"),
        "vit-b16": build_vit_b16,
        "yolov5s": build_yolov5s,
    }
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    try:
        for name in models:
            if name == "yolov8n":
                sess = timer.session(os.path.expanduser(args.yolov8n))
                inp = sess.get_inputs()[0].name
                for size in (320, 640):
                    feeds = {inp: pixels(rng, 1, size, unit=True)}
                    median, outs = timer.time(sess, feeds)
                    check_outputs(f"yolov8n {size}", sess, outs, {})
                    add("yolov8n", f"frames per second, {size}x{size}", median, 1, "FPS",
                        f"batch 1, {size}x{size}, f32, the given file (its own decoding), no NMS")
                del sess
                continue
            t0 = time.perf_counter()
            model = builders[name]()
            onnx.checker.check_model(model)
            path = os.path.join(out_dir, f"{name}.onnx")
            onnx.save(model, path)
            del model
            mib = os.path.getsize(path) / 2**20
            print(f"built {path} ({mib:.0f} MiB) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            sess = timer.session(path)
            if name == "resnet50":
                for batch in ([1] if args.quick else [1, 32]):
                    feeds = {"pixels": pixels(rng, batch, 224)}
                    if batch == 1:
                        save_inputs(name, feeds)
                    median, outs = timer.time(sess, feeds)
                    check_outputs(f"resnet50 b{batch}", sess, outs, {"logits": (batch, 1000)})
                    add(name, f"throughput, batch {batch}", median, batch, "img/s",
                        f"batch {batch}, 224x224, f32")
            elif name in ("bert-large", "bert-base"):
                median, outs = timer.time(sess, save_inputs(name, bert_feeds(rng, 1, 128)))
                check_outputs(name, sess, outs, {"start_logits": (1, 128), "end_logits": (1, 128)})
                add(name, "latency, batch 1, seq 128", median, 1, "ms", "batch 1, seq 128, f32")
            elif name == "vit-b16":
                median, outs = timer.time(sess, save_inputs(name, {"pixels": pixels(rng, 1, 224)}))
                check_outputs(name, sess, outs, {"logits": (1, 1000)})
                add(name, "throughput, batch 1", median, 1, "img/s", "batch 1, 224x224, f32")
            elif name == "yolov5s":
                feeds = save_inputs(name, {"pixels": pixels(rng, 1, 640, unit=True)})
                median, outs = timer.time(sess, feeds)
                check_outputs(name, sess, outs, {"predictions": (1, 25200, 85)})
                add(name, "frames per second", median, 1, "FPS",
                    "batch 1, 640x640, f32, decoding in the graph, no NMS")
            del sess
            if not args.save_onnx:
                os.remove(path)
    finally:
        if not args.save_onnx:
            shutil.rmtree(out_dir, ignore_errors=True)

    threads = timer.threads
    peer = (f"onnxruntime {ort.__version__} CPUExecutionProvider "
            f"(defaults, {threads if threads is not None else '?'} threads)")
    cpu = cpu_model_name()
    print(f"\nPeer: {peer}; default SessionOptions (graph optimization level ALL, sequential, "
          f"intra-op threads 0 = one per physical core). CPU: {cpu}, {os.cpu_count()} logical CPUs"
          + (f", 1-min load average {load:.2f} at start" if load is not None else "")
          + f". Warm-up 1 run, then the median of {args.runs}.\n")
    print("| model | metric | value | unit |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['metric']} | {r['value']} | {r['unit']} |")
    shares = [r["others_cpu_share"] for r in rows if r["others_cpu_share"] is not None]
    if shares:
        lo, hi = min(shares), max(shares)
        span = f"{lo:.0%}" if lo == hi else f"{lo:.0%} to {hi:.0%}"
        print(f"\nOther processes used {span} of the CPUs during the "
              "timed runs (per case: the JSON's others_cpu_share); above a few percent the figures "
              "are slower than this machine gives a quiet onnxruntime.")
    if skipped:
        print("\nskipped: " + "; ".join(skipped))
    if args.json:
        doc = {"peer": peer, "cpu": cpu, "models": rows, "logical_cpus": os.cpu_count(),
               "load_average_1min_at_start": None if load is None else round(load, 2),
               "runs": args.runs, "skipped": skipped}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
