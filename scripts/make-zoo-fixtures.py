#!/usr/bin/env python3
"""Write the model-zoo reference fixtures: tiny random-weight models with their inputs and outputs.

An independent numpy reference (no torch, no transformers) for the zoo's graph builders. Per model,
one safetensors file OUT/<name>.safetensors holds
    the model's weights under the names the real checkpoints use (torchvision, Hugging Face,
        Ultralytics state dicts),
    the inputs under names starting "input.",
    the expected outputs under names starting "output.",
    and in __metadata__: "config" (a JSON string of the hyper-parameters) and "reference".

Usage:  pip install -r scripts/zoo-fixtures-requirements.txt
        python3 scripts/make-zoo-fixtures.py zoo/tests/data/fixtures

Weights are drawn float64 from np.random.default_rng(2026) (a fresh generator per model, so one
model's file does not depend on the others), rounded to float32 and stored; the forward passes run
in float64 on exactly those float32 values, and outputs are rounded to float32 at the end.
Linear/conv weights ~ U(+-1/sqrt(fan_in)), biases U(+-0.1), LayerNorm weight 1+U(+-0.1), bias
U(+-0.1), BatchNorm weight 1+U(+-0.2), bias U(+-0.1), embeddings N(0, 0.5^2). BatchNorm running
statistics are calibrated (see Weights.calibrate_bn) so the conv nets' activations stay O(1).
The output is byte-for-byte the same on every run (with the pinned numpy).
"""
import json
import math
import pathlib
import sys

import numpy as np

SEED = 2026
REFERENCE = f"numpy {np.__version__}, scripts/make-zoo-fixtures.py"


# ----------------------------------------------------------------------------- safetensors writer

def write_safetensors(path, tensors, metadata):
    """tensors: dict name -> np.ndarray (float32 or int64), written in the dict's order."""
    header = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        if arr.dtype == np.float32:
            dtype, raw = "F32", arr.astype("<f4").tobytes(order="C")
        elif arr.dtype == np.int64:
            dtype, raw = "I64", arr.astype("<i8").tobytes(order="C")
        else:
            raise TypeError(f"{name}: dtype {arr.dtype} not written")
        header[name] = {"dtype": dtype, "shape": [int(d) for d in arr.shape],
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def read_safetensors(path):
    """Read back what write_safetensors wrote (self-check)."""
    data = pathlib.Path(path).read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__")
    body = data[8 + n:]
    out = {}
    for name, h in header.items():
        b, e = h["data_offsets"]
        dt = {"F32": "<f4", "I64": "<i8"}[h["dtype"]]
        out[name] = np.frombuffer(body[b:e], dtype=dt).reshape(h["shape"])
    return out, meta


# ----------------------------------------------------------------------------- weights

class Weights:
    """Draws weights in state-dict order; keeps the float32 values that are stored."""

    def __init__(self, rng):
        self.rng = rng
        self.sd = {}

    def _put(self, name, value):
        assert name not in self.sd, name
        self.sd[name] = np.asarray(value, dtype=np.float32)

    def uniform(self, name, shape, bound):
        self._put(name, self.rng.uniform(-bound, bound, size=shape))

    def linear(self, prefix, n_out, n_in, bias=True):
        """PyTorch nn.Linear: weight [out, in]."""
        self.uniform(prefix + ".weight", (n_out, n_in), 1.0 / math.sqrt(n_in))
        if bias:
            self.uniform(prefix + ".bias", (n_out,), 0.1)

    def conv1d_hf(self, prefix, n_in, n_out):
        """Hugging Face Conv1D (GPT-2): weight [in, out]."""
        self.uniform(prefix + ".weight", (n_in, n_out), 1.0 / math.sqrt(n_in))
        self.uniform(prefix + ".bias", (n_out,), 0.1)

    def conv(self, prefix, c_out, c_in, k, bias=False):
        self.uniform(prefix + ".weight", (c_out, c_in, k, k), 1.0 / math.sqrt(c_in * k * k))
        if bias:
            self.uniform(prefix + ".bias", (c_out,), 0.1)

    def batchnorm(self, prefix, c):
        self._put(prefix + ".weight", 1.0 + self.rng.uniform(-0.2, 0.2, size=c))
        self._put(prefix + ".bias", self.rng.uniform(-0.1, 0.1, size=c))
        # Running statistics are filled in by calibrate_bn (their slots keep state-dict order).
        self.sd[prefix + ".running_mean"] = None
        self.sd[prefix + ".running_var"] = None
        # PyTorch keeps this counter in every BatchNorm state dict; it plays no part in inference.
        self.sd[prefix + ".num_batches_tracked"] = np.array(0, dtype=np.int64)

    def calibrate_bn(self, prefix, x):
        """Running statistics as a trained network has them: the per-channel mean and variance of
        what reaches this BatchNorm on a calibration batch, perturbed (mean + U(+-0.1) * std,
        var * U(0.5, 1.5)). With fixed N(0, 1)-like statistics instead, the +-1/sqrt(fan_in)
        convolutions shrink the signal layer after layer until deep outputs no longer depend on
        the image. Done once, on the calibration pass; later passes use the stored values."""
        if self.sd[prefix + ".running_mean"] is not None:
            return
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        c = mean.shape[0]
        self._put_slot(prefix + ".running_mean", mean + self.rng.uniform(-0.1, 0.1, size=c) * np.sqrt(var))
        self._put_slot(prefix + ".running_var", np.maximum(var, 1e-4) * self.rng.uniform(0.5, 1.5, size=c))

    def _put_slot(self, name, value):
        assert self.sd[name] is None, name
        self.sd[name] = np.asarray(value, dtype=np.float32)

    def state_dict(self):
        missing = [k for k, v in self.sd.items() if v is None]
        assert not missing, f"never calibrated: {missing}"
        return dict(self.sd)

    def layernorm(self, prefix, c):
        self._put(prefix + ".weight", 1.0 + self.rng.uniform(-0.1, 0.1, size=c))
        self._put(prefix + ".bias", self.rng.uniform(-0.1, 0.1, size=c))

    def embedding(self, name, shape):
        self._put(name, self.rng.standard_normal(size=shape) * 0.5)

    def __getitem__(self, name):
        """The stored float32 value, as float64 for computing."""
        return self.sd[name].astype(np.float64)


# ----------------------------------------------------------------------------- float64 ops

def conv2d(x, w, b=None, stride=1, pad=0):
    """x [N,C,H,W], w [O,C,kh,kw]; zero padding; cross-correlation as in PyTorch."""
    _, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]  # [N,C,Ho,Wo,kh,kw]
    y = np.einsum("nchwij,ocij->nohw", win, w, optimize=True)
    if b is not None:
        y = y + b[None, :, None, None]
    return y


def maxpool2d(x, k, stride, pad):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    return win[:, :, ::stride, ::stride].max(axis=(4, 5))


def batchnorm(x, W, prefix, eps):
    W.calibrate_bn(prefix, x)  # no-op after the calibration pass
    g, b = W[prefix + ".weight"], W[prefix + ".bias"]
    m, v = W[prefix + ".running_mean"], W[prefix + ".running_var"]
    s = lambda a: a[None, :, None, None]
    return (x - s(m)) / np.sqrt(s(v) + eps) * s(g) + s(b)


def layernorm(x, W, prefix, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)  # biased, as torch
    return (x - mu) / np.sqrt(var + eps) * W[prefix + ".weight"] + W[prefix + ".bias"]


def linear(x, W, prefix):
    """nn.Linear: y = x W^T + b, W [out, in]."""
    return x @ W[prefix + ".weight"].T + W[prefix + ".bias"]


def conv1d_hf(x, W, prefix):
    """Hugging Face Conv1D: y = x W + b, W [in, out]."""
    return x @ W[prefix + ".weight"] + W[prefix + ".bias"]


def relu(x):
    return np.maximum(x, 0.0)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def silu(x):
    return x * sigmoid(x)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu_erf(x):
    """Exact GELU (torch.nn.functional.gelu default; HF hidden_act "gelu")."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    """HF "gelu_new" (GPT-2): the tanh approximation."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def attention(q, k, v, n_heads, additive_mask=None):
    """q,k,v [B,T,C] -> [B,T,C]; additive_mask broadcasts against scores [B,heads,Tq,Tk]."""
    B, T, C = q.shape
    d = C // n_heads
    split = lambda t: t.reshape(B, t.shape[1], n_heads, d).transpose(0, 2, 1, 3)
    q, k, v = split(q), split(k), split(v)
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
    if additive_mask is not None:
        scores = scores + additive_mask
    ctx = softmax(scores) @ v  # [B,h,T,d]
    return ctx.transpose(0, 2, 1, 3).reshape(B, T, C)


def check_output(name, y):
    y = np.asarray(y, dtype=np.float64)
    assert np.all(np.isfinite(y)), f"{name}: not finite"
    assert y.std() > 1e-3, f"{name}: degenerate (std {y.std()})"
    return y


def check_image_dependence(name, y, least=0.3):
    """y [2, ...] for two different inputs: they must differ by a fair part of how much y varies."""
    y = np.asarray(y, dtype=np.float64)
    ratio = (y[0] - y[1]).std() / y.std()
    assert ratio > least, f"{name}: barely depends on the input ({ratio:.3f})"
    print(f"  {name}: input dependence {ratio:.2f}")


def f32(x):
    return np.asarray(x, dtype=np.float32)


# ----------------------------------------------------------------------------- ResNet (torchvision)

def resnet(block):
    if block == "bottleneck":
        cfg = {"block": "bottleneck", "layers": [3, 4, 6, 3], "width": 8, "num_classes": 10,
               "image_size": 32, "bn_eps": 1e-5, "expansion": 4}
    else:
        cfg = {"block": "basic", "layers": [2, 2, 2, 2], "width": 8, "num_classes": 10,
               "image_size": 32, "bn_eps": 1e-5, "expansion": 1}
    rng = np.random.default_rng(SEED)
    W = Weights(rng)
    width, exp, eps = cfg["width"], cfg["expansion"], cfg["bn_eps"]

    # Weights, in torchvision's state-dict order.
    W.conv("conv1", width, 3, 7)
    W.batchnorm("bn1", width)
    plan = []  # (prefix, inplanes, planes, stride, has_downsample)
    inplanes = width
    for s, n in enumerate(cfg["layers"]):
        planes = width * 2 ** s
        stride = 1 if s == 0 else 2
        for i in range(n):
            st = stride if i == 0 else 1
            # torchvision: downsample iff stride != 1 or inplanes != planes * expansion
            # (so ResNet-18's layer1.0 has none; ResNet-50's layer1.0 has one).
            ds = i == 0 and (stride != 1 or inplanes != planes * exp)
            p = f"layer{s + 1}.{i}"
            if block == "bottleneck":
                W.conv(p + ".conv1", planes, inplanes, 1)
                W.batchnorm(p + ".bn1", planes)
                W.conv(p + ".conv2", planes, planes, 3)
                W.batchnorm(p + ".bn2", planes)
                W.conv(p + ".conv3", planes * exp, planes, 1)
                W.batchnorm(p + ".bn3", planes * exp)
            else:
                W.conv(p + ".conv1", planes, inplanes, 3)
                W.batchnorm(p + ".bn1", planes)
                W.conv(p + ".conv2", planes, planes, 3)
                W.batchnorm(p + ".bn2", planes)
            if ds:
                W.conv(p + ".downsample.0", planes * exp, inplanes, 1)
                W.batchnorm(p + ".downsample.1", planes * exp)
            plan.append((p, st, ds))
            inplanes = planes * exp
    W.linear("fc", cfg["num_classes"], inplanes)

    def forward(x):
        """Eval mode; the first call (the calibration batch) sets the BatchNorm statistics."""
        x = relu(batchnorm(conv2d(x, W["conv1.weight"], stride=2, pad=3), W, "bn1", eps))
        x = maxpool2d(x, 3, 2, 1)
        for p, st, ds in plan:
            if block == "bottleneck":
                out = relu(batchnorm(conv2d(x, W[p + ".conv1.weight"]), W, p + ".bn1", eps))
                out = relu(batchnorm(conv2d(out, W[p + ".conv2.weight"], stride=st, pad=1), W, p + ".bn2", eps))
                out = batchnorm(conv2d(out, W[p + ".conv3.weight"]), W, p + ".bn3", eps)
            else:
                out = relu(batchnorm(conv2d(x, W[p + ".conv1.weight"], stride=st, pad=1), W, p + ".bn1", eps))
                out = batchnorm(conv2d(out, W[p + ".conv2.weight"], pad=1), W, p + ".bn2", eps)
            if ds:
                idn = batchnorm(conv2d(x, W[p + ".downsample.0.weight"], stride=st), W, p + ".downsample.1", eps)
            else:
                idn = x
            x = relu(out + idn)
        feat = x.mean(axis=(2, 3))  # adaptive avgpool 1x1 + flatten
        return linear(feat, W, "fc")

    size = cfg["image_size"]
    forward(f32(rng.standard_normal((32, 3, size, size))).astype(np.float64))  # calibration
    pixels = f32(rng.standard_normal((2, 3, size, size)))
    logits = check_output("resnet logits", forward(pixels.astype(np.float64)))
    assert logits.shape == (2, cfg["num_classes"])
    check_image_dependence("resnet logits", logits)

    tensors = W.state_dict()
    tensors["input.pixels"] = pixels
    tensors["output.logits"] = f32(logits)
    return tensors, cfg


# ----------------------------------------------------------------------------- BERT (HF)

def bert():
    cfg = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 64, "max_position_embeddings": 64, "type_vocab_size": 2,
           "layer_norm_eps": 1e-12, "hidden_act": "gelu"}
    rng = np.random.default_rng(SEED)
    W = Weights(rng)
    H, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    W.embedding("bert.embeddings.word_embeddings.weight", (cfg["vocab_size"], H))
    W.embedding("bert.embeddings.position_embeddings.weight", (cfg["max_position_embeddings"], H))
    W.embedding("bert.embeddings.token_type_embeddings.weight", (cfg["type_vocab_size"], H))
    W.layernorm("bert.embeddings.LayerNorm", H)
    for i in range(L):
        p = f"bert.encoder.layer.{i}"
        for n in ("query", "key", "value"):
            W.linear(f"{p}.attention.self.{n}", H, H)
        W.linear(f"{p}.attention.output.dense", H, H)
        W.layernorm(f"{p}.attention.output.LayerNorm", H)
        W.linear(f"{p}.intermediate.dense", I, H)
        W.linear(f"{p}.output.dense", H, I)
        W.layernorm(f"{p}.output.LayerNorm", H)
    W.linear("qa_outputs", 2, H)

    B, T = 2, 16
    input_ids = rng.integers(1, cfg["vocab_size"], size=(B, T)).astype(np.int64)
    attention_mask = np.ones((B, T), dtype=np.int64)
    attention_mask[1, -5:] = 0
    input_ids[attention_mask == 0] = 0  # [PAD]
    token_type_ids = np.zeros((B, T), dtype=np.int64)
    token_type_ids[:, 7:] = 1

    def forward(ids, mask, types):
        eps = cfg["layer_norm_eps"]
        pos = np.arange(ids.shape[1])
        h = (W["bert.embeddings.word_embeddings.weight"][ids]
             + W["bert.embeddings.position_embeddings.weight"][pos][None]
             + W["bert.embeddings.token_type_embeddings.weight"][types])
        h = layernorm(h, W, "bert.embeddings.LayerNorm", eps)
        # HF: extended mask [B,1,1,T] = (1 - mask) * finfo(float32).min, added to the scores.
        ext = (1.0 - mask[:, None, None, :].astype(np.float64)) * float(np.finfo(np.float32).min)
        for i in range(L):
            p = f"bert.encoder.layer.{i}"
            q = linear(h, W, p + ".attention.self.query")
            k = linear(h, W, p + ".attention.self.key")
            v = linear(h, W, p + ".attention.self.value")
            ctx = attention(q, k, v, cfg["num_attention_heads"], ext)
            a = layernorm(linear(ctx, W, p + ".attention.output.dense") + h, W,
                          p + ".attention.output.LayerNorm", eps)
            m = gelu_erf(linear(a, W, p + ".intermediate.dense"))
            h = layernorm(linear(m, W, p + ".output.dense") + a, W, p + ".output.LayerNorm", eps)
        return h

    h = check_output("bert last_hidden_state", forward(input_ids, attention_mask, token_type_ids))
    qa = linear(h, W, "qa_outputs")
    start, end = check_output("bert start", qa[..., 0]), check_output("bert end", qa[..., 1])
    # sentence-transformers: mean pooling over mask, then Normalize (F.normalize, eps 1e-12).
    mk = attention_mask[..., None].astype(np.float64)
    pooled = (h * mk).sum(axis=1) / np.maximum(mk.sum(axis=1), 1e-9)
    sent = pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
    check_output("bert sentence_embedding", sent)

    # Self-check: the padded positions of row 1 must not reach its unpadded rows, nor row 0.
    ids2, types2 = input_ids.copy(), token_type_ids.copy()
    ids2[1, -5:] = rng.integers(1, cfg["vocab_size"], size=5)
    types2[1, -5:] = 0
    h2 = forward(ids2, attention_mask, types2)
    assert np.array_equal(h2[1, :-5], h[1, :-5]) and np.array_equal(h2[0], h[0]), "mask leaks"
    assert not np.allclose(h2[1, -5:], h[1, -5:]), "padded positions should change"
    # And without the mask the unpadded rows would differ (so the mask matters in this fixture).
    h3 = forward(input_ids, np.ones_like(attention_mask), token_type_ids)
    assert np.abs(h3[1, :-5] - h[1, :-5]).max() > 1e-2

    tensors = W.state_dict()
    tensors["input.input_ids"] = input_ids
    tensors["input.attention_mask"] = attention_mask
    tensors["input.token_type_ids"] = token_type_ids
    tensors["output.last_hidden_state"] = f32(h)
    tensors["output.start_logits"] = f32(start)
    tensors["output.end_logits"] = f32(end)
    tensors["output.sentence_embedding"] = f32(sent)
    return tensors, cfg


# ----------------------------------------------------------------------------- GPT-2 (HF)

def gpt2():
    cfg = {"vocab_size": 100, "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 4,
           "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new", "tie_word_embeddings": True}
    rng = np.random.default_rng(SEED)
    W = Weights(rng)
    C, L, V = cfg["n_embd"], cfg["n_layer"], cfg["vocab_size"]
    W.embedding("transformer.wte.weight", (V, C))
    W.embedding("transformer.wpe.weight", (cfg["n_positions"], C))
    for i in range(L):
        p = f"transformer.h.{i}"
        W.layernorm(p + ".ln_1", C)
        W.conv1d_hf(p + ".attn.c_attn", C, 3 * C)
        W.conv1d_hf(p + ".attn.c_proj", C, C)
        W.layernorm(p + ".ln_2", C)
        W.conv1d_hf(p + ".mlp.c_fc", C, 4 * C)
        W.conv1d_hf(p + ".mlp.c_proj", 4 * C, C)
    W.layernorm("transformer.ln_f", C)

    def forward(ids):
        """ids [T] -> logits [T, V], the whole sequence each time (no KV cache)."""
        eps = cfg["layer_norm_epsilon"]
        T = len(ids)
        h = (W["transformer.wte.weight"][ids] + W["transformer.wpe.weight"][np.arange(T)])[None]
        causal = np.where(np.tril(np.ones((T, T), dtype=bool)), 0.0,
                          float(np.finfo(np.float32).min))[None, None]
        for i in range(L):
            p = f"transformer.h.{i}"
            qkv = conv1d_hf(layernorm(h, W, p + ".ln_1", eps), W, p + ".attn.c_attn")
            q, k, v = np.split(qkv, 3, axis=-1)  # c_attn's columns: [q | k | v]
            a = attention(q, k, v, cfg["n_head"], causal)
            h = h + conv1d_hf(a, W, p + ".attn.c_proj")
            m = gelu_tanh(conv1d_hf(layernorm(h, W, p + ".ln_2", eps), W, p + ".mlp.c_fc"))
            h = h + conv1d_hf(m, W, p + ".mlp.c_proj")
        h = layernorm(h, W, "transformer.ln_f", eps)
        return (h @ W["transformer.wte.weight"].T)[0]  # tied lm_head

    # The prompt: draw until greedy decoding is not a constant and no step is a near-tie, so an
    # f32 implementation with a KV cache picks the same tokens.
    n_new = 12
    for attempt in range(100):
        prompt = rng.integers(0, V, size=7).astype(np.int64)
        seq, margins, step_logits = list(prompt), [], []
        for _ in range(n_new):
            last = forward(np.array(seq))[-1]
            top2 = np.sort(last)[-2:]
            margins.append(top2[1] - top2[0])
            step_logits.append(last)
            seq.append(int(np.argmax(last)))  # first max on ties
        gen = np.array(seq[len(prompt):], dtype=np.int64)
        if len(set(gen.tolist())) >= 3 and min(margins) > 0.05:
            break
    else:
        raise RuntimeError("no usable GPT-2 prompt")
    logits = check_output("gpt2 logits", forward(prompt))
    # Causality check: logits of the prompt positions equal those of the longer sequence.
    assert np.allclose(forward(np.array(seq))[:len(prompt)], logits, rtol=0, atol=1e-12)
    print(f"  gpt2: prompt attempt {attempt}, generated {gen.tolist()}, min top1-top2 margin "
          f"{min(margins):.3f}")

    tensors = W.state_dict()
    tensors["input.prompt"] = prompt
    tensors["output.logits"] = f32(logits)
    tensors["output.generated"] = gen
    # Row j: the last-position logits that generated[j] is the argmax of (prompt + generated[:j]),
    # a finer check of a KV-cache decoder than the tokens alone.
    tensors["output.generated_logits"] = f32(np.stack(step_logits))
    return tensors, cfg


# ----------------------------------------------------------------------------- ViT (HF)

def vit():
    cfg = {"image_size": 32, "patch_size": 8, "num_channels": 3, "hidden_size": 32,
           "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
           "layer_norm_eps": 1e-12, "num_labels": 10, "hidden_act": "gelu"}
    rng = np.random.default_rng(SEED)
    W = Weights(rng)
    H, I, L, P = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["patch_size"]
    n_patches = (cfg["image_size"] // P) ** 2
    W.embedding("vit.embeddings.cls_token", (1, 1, H))
    W.embedding("vit.embeddings.position_embeddings", (1, 1 + n_patches, H))
    W.conv("vit.embeddings.patch_embeddings.projection", H, cfg["num_channels"], P, bias=True)
    for i in range(L):
        p = f"vit.encoder.layer.{i}"
        for n in ("query", "key", "value"):
            W.linear(f"{p}.attention.attention.{n}", H, H)
        W.linear(f"{p}.attention.output.dense", H, H)
        W.linear(f"{p}.intermediate.dense", I, H)
        W.linear(f"{p}.output.dense", H, I)
        W.layernorm(f"{p}.layernorm_before", H)
        W.layernorm(f"{p}.layernorm_after", H)
    W.layernorm("vit.layernorm", H)
    W.linear("classifier", cfg["num_labels"], H)

    pixels = f32(rng.standard_normal((2, cfg["num_channels"], cfg["image_size"], cfg["image_size"])))
    eps = cfg["layer_norm_eps"]
    x = conv2d(pixels.astype(np.float64), W["vit.embeddings.patch_embeddings.projection.weight"],
               W["vit.embeddings.patch_embeddings.projection.bias"], stride=P)
    B = x.shape[0]
    x = x.reshape(B, H, -1).transpose(0, 2, 1)  # [B, patches (row-major y, x), H]
    cls = np.broadcast_to(W["vit.embeddings.cls_token"], (B, 1, H))
    h = np.concatenate([cls, x], axis=1) + W["vit.embeddings.position_embeddings"]
    for i in range(L):
        p = f"vit.encoder.layer.{i}"
        a = layernorm(h, W, p + ".layernorm_before", eps)
        ctx = attention(linear(a, W, p + ".attention.attention.query"),
                        linear(a, W, p + ".attention.attention.key"),
                        linear(a, W, p + ".attention.attention.value"), cfg["num_attention_heads"])
        h = h + linear(ctx, W, p + ".attention.output.dense")
        m = gelu_erf(linear(layernorm(h, W, p + ".layernorm_after", eps), W, p + ".intermediate.dense"))
        h = h + linear(m, W, p + ".output.dense")
    h = layernorm(h, W, "vit.layernorm", eps)
    logits = check_output("vit logits", linear(h[:, 0], W, "classifier"))
    assert logits.shape == (2, cfg["num_labels"])
    # The CLS row is dominated by cls_token + position_embeddings[0] in an untrained ViT, so the
    # logits move less with the image than the patch rows do; both are checked and stored.
    check_image_dependence("vit logits", logits, least=0.1)
    check_image_dependence("vit last_hidden_state", h)

    tensors = W.state_dict()
    tensors["input.pixels"] = pixels
    tensors["output.last_hidden_state"] = f32(h)  # after vit.layernorm, as HF ViTModel returns it
    tensors["output.logits"] = f32(logits)
    return tensors, cfg


# ----------------------------------------------------------------------------- YOLOv5 (Ultralytics v6.x)

YOLOV5S = {
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [
        [-1, 1, "Conv", [64, 6, 2, 2]],
        [-1, 1, "Conv", [128, 3, 2]],
        [-1, 3, "C3", [128]],
        [-1, 1, "Conv", [256, 3, 2]],
        [-1, 6, "C3", [256]],
        [-1, 1, "Conv", [512, 3, 2]],
        [-1, 9, "C3", [512]],
        [-1, 1, "Conv", [1024, 3, 2]],
        [-1, 3, "C3", [1024]],
        [-1, 1, "SPPF", [1024, 5]],
    ],
    "head": [
        [-1, 1, "Conv", [512, 1, 1]],
        [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
        [[-1, 6], 1, "Concat", [1]],
        [-1, 3, "C3", [512, False]],
        [-1, 1, "Conv", [256, 1, 1]],
        [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
        [[-1, 4], 1, "Concat", [1]],
        [-1, 3, "C3", [256, False]],
        [-1, 1, "Conv", [256, 3, 2]],
        [[-1, 14], 1, "Concat", [1]],
        [-1, 3, "C3", [512, False]],
        [-1, 1, "Conv", [512, 3, 2]],
        [[-1, 10], 1, "Concat", [1]],
        [-1, 3, "C3", [1024, False]],
        [[17, 20, 23], 1, "Detect", ["nc", "anchors"]],
    ],
}


def make_divisible(x, divisor=8):
    return math.ceil(x / divisor) * divisor


def parse_yolo(nc, gd, gw):
    """Ultralytics parse_model: the layer list with depth/width multiples applied.
    Returns rows [from, number, module, args] with args as parse_model leaves them."""
    no = 3 * (nc + 5)
    ch, rows = [3], []
    for i, (f, n, m, args) in enumerate(YOLOV5S["backbone"] + YOLOV5S["head"]):
        args = list(args)
        n = max(round(n * gd), 1) if n > 1 else n
        if m in ("Conv", "C3", "SPPF"):
            c1, c2 = ch[f], args[0]
            if c2 != no:
                c2 = make_divisible(c2 * gw, 8)
            args = [c1, c2, *args[1:]]
            if m == "C3":
                args.insert(2, n)
        elif m == "Concat":
            c2 = sum(ch[x] for x in f)
        elif m == "Detect":
            args = [nc, YOLOV5S["anchors"], [ch[x] for x in f]]
            c2 = None
        else:  # nn.Upsample
            c2 = ch[f]
        rows.append([f, n, m, args])
        if i == 0:
            ch = []
        ch.append(c2)
    return rows


def yolov5():
    # width_multiple 0.0625, not 0.125: at 0.125 this file alone is 1.9 MB and the fixtures 4.6 MB.
    nc, gd, gw, img = 3, 0.33, 0.0625, 64
    rows = parse_yolo(nc, gd, gw)
    strides = [8, 16, 32]
    cfg = {"nc": nc, "depth_multiple": gd, "width_multiple": gw, "image_size": img,
           "bn_eps": 1e-3, "act": "silu", "anchors": YOLOV5S["anchors"], "strides": strides,
           "layers": rows}
    rng = np.random.default_rng(SEED)
    W = Weights(rng)
    eps = cfg["bn_eps"]

    def w_conv(p, c1, c2, k):
        W.conv(p + ".conv", c2, c1, k)
        W.batchnorm(p + ".bn", c2)

    # Weights, in the state-dict order of each module.
    for i, (f, n, m, args) in enumerate(rows):
        p = f"model.{i}"
        if m == "Conv":
            w_conv(p, args[0], args[1], args[2])
        elif m == "C3":
            c1, c2, n_b = args[0], args[1], args[2]
            c_ = c2 // 2
            w_conv(p + ".cv1", c1, c_, 1)
            w_conv(p + ".cv2", c1, c_, 1)
            w_conv(p + ".cv3", 2 * c_, c2, 1)
            for j in range(n_b):
                w_conv(f"{p}.m.{j}.cv1", c_, c_, 1)  # Bottleneck(c_, c_, e=1.0)
                w_conv(f"{p}.m.{j}.cv2", c_, c_, 3)
        elif m == "SPPF":
            c1, c2 = args[0], args[1]
            c_ = c1 // 2
            w_conv(p + ".cv1", c1, c_, 1)
            w_conv(p + ".cv2", 4 * c_, c2, 1)
        elif m == "Detect":
            # Buffer kept in the state dict: anchors in grid units (pixels / stride), [nl, na, 2].
            anc = np.array(YOLOV5S["anchors"], dtype=np.float64).reshape(3, 3, 2)
            W.sd[p + ".anchors"] = f32(anc / np.array(strides, dtype=np.float64)[:, None, None])
            for j, c in enumerate(args[2]):
                W.conv(f"{p}.m.{j}", 3 * (nc + 5), c, 1, bias=True)

    def conv(x, p, k, s=1, pad=None):
        pad = k // 2 if pad is None else pad
        return silu(batchnorm(conv2d(x, W[p + ".conv.weight"], stride=s, pad=pad), W, p + ".bn", eps))

    def c3(x, p, n_b, shortcut):
        y = conv(x, p + ".cv1", 1)
        for j in range(n_b):
            b = conv(conv(y, f"{p}.m.{j}.cv1", 1), f"{p}.m.{j}.cv2", 3)
            y = y + b if shortcut else b  # c1 == c2 always inside C3
        return conv(np.concatenate([y, conv(x, p + ".cv2", 1)], axis=1), p + ".cv3", 1)

    def sppf(x, p, k):
        x = conv(x, p + ".cv1", 1)
        y1 = maxpool2d(x, k, 1, k // 2)
        y2 = maxpool2d(y1, k, 1, k // 2)
        y3 = maxpool2d(y2, k, 1, k // 2)
        return conv(np.concatenate([x, y1, y2, y3], axis=1), p + ".cv2", 1)

    def forward(x):
        """Eval mode; the first call (the calibration batch) sets the BatchNorm statistics."""
        outs, pred = [], None
        for i, (f, n, m, args) in enumerate(rows):
            p = f"model.{i}"
            if isinstance(f, int):
                xin = x if f == -1 else outs[f]
            else:
                xin = [x if j == -1 else outs[j] for j in f]
            if m == "Conv":
                k = args[2]
                s = args[3] if len(args) > 3 else 1
                pad = args[4] if len(args) > 4 else None
                x = conv(xin, p, k, s, pad)
            elif m == "C3":
                x = c3(xin, p, args[2], args[3] if len(args) > 3 else True)
            elif m == "SPPF":
                x = sppf(xin, p, args[2])
            elif m == "nn.Upsample":
                x = xin.repeat(2, axis=2).repeat(2, axis=3)
            elif m == "Concat":
                x = np.concatenate(xin, axis=1)
            elif m == "Detect":
                no, na, z = nc + 5, 3, []
                anc_px = np.array(YOLOV5S["anchors"], dtype=np.float64).reshape(3, 3, 2)
                for lvl, t in enumerate(xin):
                    r = conv2d(t, W[f"{p}.m.{lvl}.weight"], W[f"{p}.m.{lvl}.bias"])
                    bs, _, ny, nx = r.shape
                    r = r.reshape(bs, na, no, ny, nx).transpose(0, 1, 3, 4, 2)  # [bs, na, ny, nx, no]
                    y = sigmoid(r)
                    yv, xv = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
                    grid = np.stack([xv, yv], axis=-1)[None, None] - 0.5  # (x, y)
                    xy = (y[..., :2] * 2 + grid) * strides[lvl]
                    wh = (y[..., 2:4] * 2) ** 2 * anc_px[lvl][None, :, None, None, :]
                    z.append(np.concatenate([xy, wh, y[..., 4:]], axis=-1).reshape(bs, -1, no))
                pred = np.concatenate(z, axis=1)
            outs.append(x)
        return pred, outs

    forward(f32(rng.random((8, 3, img, img))).astype(np.float64))  # calibration
    pixels = f32(rng.random((1, 3, img, img)))  # an image in [0, 1]
    pred, outs = forward(pixels.astype(np.float64))
    n_expected = 3 * sum((img // s) ** 2 for s in strides)
    assert pred.shape == (1, n_expected, nc + 5), pred.shape
    check_output("yolov5 predictions", pred)
    # Feature maps feeding Detect should be O(1) and alive, and the raw head outputs should
    # depend on the image.
    for j in (17, 20, 23):
        assert 0.2 < outs[j].std() < 20, (j, outs[j].std())
    other, _ = forward(f32(rng.random((1, 3, img, img))).astype(np.float64))
    check_image_dependence("yolov5 objectness/classes", np.stack([pred[0, :, 4:], other[0, :, 4:]]))
    check_image_dependence("yolov5 boxes", np.stack([pred[0, :, :4], other[0, :, :4]]))

    tensors = W.state_dict()
    tensors["input.pixels"] = pixels
    tensors["output.predictions"] = f32(pred)
    return tensors, cfg


# ----------------------------------------------------------------------------- main

MODELS = {
    "resnet": lambda: resnet("bottleneck"),
    "resnet18": lambda: resnet("basic"),
    "bert": bert,
    "gpt2": gpt2,
    "vit": vit,
    "yolov5": yolov5,
}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, make in MODELS.items():
        tensors, cfg = make()
        path = out / f"{name}.safetensors"
        meta = {"config": json.dumps(cfg), "reference": REFERENCE}
        write_safetensors(path, tensors, meta)
        back, meta_back = read_safetensors(path)
        assert meta_back == meta and back.keys() == tensors.keys()
        assert all(np.array_equal(back[k], tensors[k]) for k in tensors)
        size = path.stat().st_size
        total += size
        outs = {k: v for k, v in tensors.items() if k.startswith("output.")}
        desc = ", ".join(f"{k} {list(v.shape)} (std {np.asarray(v, np.float64).std():.3g})"
                         for k, v in outs.items())
        print(f"{path}: {size} bytes, {len(tensors)} tensors; {desc}")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
