"""Clients no one here wrote, against `sfumato serve`: Triton's (tritonclient[http,grpc]) and
KServe's (kserve), over HTTP and gRPC. Run by cli/tests/serve.rs, which starts the servers;
versions pinned in scripts/serve-clients-requirements.txt.

    python serve_clients.py SFUMATO_BIN REPO HTTP_URL GRPC_ADDR TOKEN_HTTP_URL TOKEN_GRPC_ADDR TOKEN WORKDIR

Checks, each printed as it passes (an assertion stops the run with its message):
  - health, metadata, config and the repository index through both Triton clients;
  - the ONNX model's outputs, by every client and encoding (binary and JSON tensors, HTTP and
    gRPC), against `sfumato run` on the same inputs;
  - the zoo BERT layer on WebGPU against the same model on the CPU reference;
  - 16 concurrent one-row requests, each answered with its own row (batches split right), and
    the metrics showing fewer executions than inferences;
  - the model configuration over gRPC as over HTTP; the streaming extension (answers by id, an
    error on the stream that does not end it, a burst of 200 requests on one stream, past its
    bound of 64 in flight, a stream left open while the server is stopped by SIGTERM);
  - the statistics extension through both Triton clients, agreeing with /metrics;
  - bad requests, each answered with the protocol's status and a clear message, between good
    requests that still answer correctly; a model that failed to load reported with its error;
  - reloading one model while another serves, without a failed request;
  - the bearer token: refused without it or with a wrong one, served with it, probes open.
"""

import json
import queue
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

SFUMATO, REPO, HTTP, GRPC, TOKEN_HTTP, TOKEN_GRPC, TOKEN, WORK = sys.argv[1:9]
WORK = Path(WORK)
HOST = HTTP.removeprefix("http://")
TOL = 1e-4


def ok(msg):
    print(f"ok: {msg}", flush=True)


def close(a, b, what):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}"
    d = float(np.max(np.abs(a - b))) if a.size else 0.0
    assert d <= TOL * max(1.0, float(np.max(np.abs(b)))), f"{what}: max difference {d}"
    return d


def write_npy(path, a):
    np.save(path, a)
    return path


# ---- the ONNX model's expected outputs, from `sfumato run` ----
rng = np.random.default_rng(11)
X = rng.standard_normal((16, 16)).astype(np.float32)
write_npy(WORK / "x.npy", X)
out_dir = WORK / "expected"
out_dir.mkdir(exist_ok=True)
subprocess.run(
    [SFUMATO, "run", f"{REPO}/mlp/1/model.onnx", "--input", f"x={WORK / 'x.npy'}", "--output", str(out_dir), "--device", "wgpu"],
    check=True,
    stdout=subprocess.DEVNULL,
)
Y = np.load(out_dir / "y.npy")
assert Y.shape == (16, 4), Y.shape
ok(f"`sfumato run` gave the expected outputs {Y.shape}")


def raw(method, path, body=None, headers=None, url=None):
    """An HTTP request without a client library: (status, body bytes, headers)."""
    req = urllib.request.Request((url or HTTP) + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def error_of(status, body, want_status, *says):
    msg = json.loads(body)["error"]
    assert status == want_status, f"status {status} (wanted {want_status}): {msg}"
    for s in says:
        assert s.lower() in msg.lower(), f"'{s}' not in: {msg}"
    return msg


# ---- Triton's HTTP client ----
h = thttp.InferenceServerClient(HOST, concurrency=16)
assert h.is_server_live() and h.is_server_ready()
meta = h.get_server_metadata()
assert meta["name"] == "sfumato" and "binary_tensor_data" in meta["extensions"], meta
mm = h.get_model_metadata("mlp")
assert mm["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}], mm
cfg = h.get_model_config("mlp")
assert cfg["max_batch_size"] == 16 and cfg["dynamic_batching"]["preferred_batch_size"] == [4, 16], cfg
assert h.is_model_ready("mlp") and not h.is_model_ready("broken")
index = {m["name"]: m for m in h.get_model_repository_index()}
assert index["mlp"]["state"] == "READY", index
assert index["broken"]["state"] == "UNAVAILABLE" and "tensorrt_plan" in index["broken"]["reason"], index
ok("tritonclient.http: health, server and model metadata, config, the index (broken model reported with its error)")


def triton_http_infer(x, binary=True, model="mlp"):
    i = thttp.InferInput("x", list(x.shape), "FP32")
    i.set_data_from_numpy(x, binary_data=binary)
    o = thttp.InferRequestedOutput("y", binary_data=binary)
    return h.infer(model, [i], outputs=[o]).as_numpy("y")


def good_http():
    close(triton_http_infer(X[:3]), Y[:3], "a good request")


close(triton_http_infer(X[:5]), Y[:5], "binary tensors")
close(triton_http_infer(X[:2], binary=False), Y[:2], "JSON tensors")
ok("tritonclient.http: binary and JSON tensors match `sfumato run`")

# ---- Triton's gRPC client ----
g = tgrpc.InferenceServerClient(GRPC)
assert g.is_server_live() and g.is_server_ready()
assert g.get_server_metadata().name == "sfumato"
gm = g.get_model_metadata("mlp")
assert gm.inputs[0].name == "x" and list(gm.inputs[0].shape) == [-1, 16], gm
gi = {m.name: m for m in g.get_model_repository_index().models}
assert gi["mlp"].state == "READY" and gi["broken"].state == "UNAVAILABLE", gi


def triton_grpc_infer(x, version=""):
    i = tgrpc.InferInput("x", list(x.shape), "FP32")
    i.set_data_from_numpy(x)
    return g.infer("mlp", [i], model_version=version, outputs=[tgrpc.InferRequestedOutput("y")]).as_numpy("y")


close(triton_grpc_infer(X[:4]), Y[:4], "gRPC")
close(triton_grpc_infer(X[4:5], version="1"), Y[4:5], "gRPC, version 1")
ok("tritonclient.grpc: health, metadata, index, inference matches `sfumato run`")

# ---- the streaming extension: requests on one stream, answers as each finishes, by id; a bad
# request is answered on the stream with its error and the stream goes on ----
answers = queue.Queue()
g.start_stream(callback=lambda result, error: answers.put((result, error)))
for k in range(6):
    si = tgrpc.InferInput("x", [1, 16], "FP32")
    si.set_data_from_numpy(X[k : k + 1])
    g.async_stream_infer("mlp", [si], request_id=f"s{k}", outputs=[tgrpc.InferRequestedOutput("y")])
    if k == 2:
        sb = tgrpc.InferInput("x", [1, 8], "FP32")
        sb.set_data_from_numpy(X[:1, :8])
        g.async_stream_infer("mlp", [sb], request_id="bad")
streamed, stream_errors = {}, []
try:
    for _ in range(7):
        result, error = answers.get(timeout=120)
        if error is not None:
            stream_errors.append(str(error))
        else:
            streamed[result.get_response().id] = result.as_numpy("y")
except BaseException:
    # The client's stream thread is not a daemon: cancel it, or a failure here hangs the exit.
    g.stop_stream(cancel_requests=True)
    raise
# The client closes its side; the server must then end the stream (else this would hang).
stopper = threading.Thread(target=g.stop_stream)
stopper.start()
stopper.join(60)
assert not stopper.is_alive(), "the server did not end a stream its client had closed"
assert len(stream_errors) == 1 and "[1, 8]" in stream_errors[0], stream_errors
for k in range(6):
    close(streamed[f"s{k}"], Y[k : k + 1], f"streamed request {k}")
ok("tritonclient.grpc streaming: 6 answers by id, and a bad request's error on the same stream")

# ---- a burst past the stream's bound (64 requests in flight, past which the server stops
# reading the stream): every request is still answered, with its own row. (The bound itself is
# not observable from the client; a server that stalled at it would fail here.) ----
BURST = 200
answers = queue.Queue()
g.start_stream(callback=lambda result, error: answers.put((result, error)))
burst = {}
try:
    for k in range(BURST):
        si = tgrpc.InferInput("x", [1, 16], "FP32")
        si.set_data_from_numpy(X[k % 16 : k % 16 + 1])
        g.async_stream_infer("mlp", [si], request_id=f"b{k}", outputs=[tgrpc.InferRequestedOutput("y")])
    for _ in range(BURST):
        result, error = answers.get(timeout=120)
        assert error is None, f"a request of the burst failed: {error}"
        burst[result.get_response().id] = result.as_numpy("y")
except BaseException:
    # The client's stream thread is not a daemon: cancel it, or a failure here hangs the exit.
    g.stop_stream(cancel_requests=True)
    raise
g.stop_stream()
assert len(burst) == BURST, len(burst)
for k in range(BURST):
    close(burst[f"b{k}"], Y[k % 16 : k % 16 + 1], f"burst request {k}")
ok(f"tritonclient.grpc streaming: a burst of {BURST} requests on one stream, every one answered with its own row")

# ---- a stream left open does not hold a server past SIGTERM: a server of this script's own
# (a repository of the ONNX model alone), a stream that answered once and stays open, then the
# signal ----
own_repo = WORK / "own-repo"
if not (own_repo / "mlp").exists():
    # A copy: the server refuses a model folder that links outside its repository.
    shutil.copytree(Path(REPO) / "mlp", own_repo / "mlp")
own = subprocess.Popen(
    [SFUMATO, "serve", "--model-repository", str(own_repo), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"],
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    text=True,
)
og = None
try:
    own_grpc, loaded = None, False
    for line in own.stdout:
        if line.startswith("serving grpc on "):
            own_grpc = line.removeprefix("serving grpc on ").strip()
        if line.startswith("models loaded"):
            loaded = True
            break
    assert own_grpc and loaded, "the second server printed no gRPC address or never loaded"

    def drain():
        for _ in own.stdout:
            pass

    threading.Thread(target=drain, daemon=True).start()
    og = tgrpc.InferenceServerClient(own_grpc)
    answers = queue.Queue()
    og.start_stream(callback=lambda result, error: answers.put((result, error)))
    si = tgrpc.InferInput("x", [1, 16], "FP32")
    si.set_data_from_numpy(X[:1])
    og.async_stream_infer("mlp", [si], request_id="open", outputs=[tgrpc.InferRequestedOutput("y")])
    result, error = answers.get(timeout=120)
    assert error is None, error
    close(result.as_numpy("y"), Y[:1], "the open stream's answer")
    own.terminate()
    try:
        code = own.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError("a server with an open stream did not exit within 60 s of SIGTERM")
    assert code == 0, f"the server exited with {code} after SIGTERM"
finally:
    if own.poll() is None:
        own.kill()
        own.wait()
    if og is not None:
        # The server is gone, so its stream has ended; cancel the client's side all the same.
        threading.Thread(target=lambda: og.stop_stream(cancel_requests=True), daemon=True).start()
ok("an open gRPC stream: the server still exits cleanly on SIGTERM (status 0)")

# ---- KServe's clients (in a process of their own: kserve and tritonclient.grpc each register
# the protocol's messages under the same protobuf names) ----
subprocess.run([sys.executable, str(Path(__file__).with_name("serve_kserve.py")), HTTP, GRPC, str(WORK)], check=True)
ok("kserve: InferenceRESTClient (JSON and binary) and InferenceGRPCClient match `sfumato run`")

# ---- the zoo's BERT layer: WebGPU against the CPU reference ----
hm = h.get_model_metadata("bert-gpu")
shapes = {t["name"]: [1] + t["shape"][1:] for t in hm["inputs"]}
feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
feeds["mask"] = np.zeros(shapes["mask"], np.float32)


def bert(model):
    ins = []
    for n, a in feeds.items():
        i = thttp.InferInput(n, list(a.shape), "FP32")
        i.set_data_from_numpy(a)
        ins.append(i)
    return h.infer(model, ins).as_numpy(hm["outputs"][0]["name"])


d = close(bert("bert-gpu"), bert("bert-cpu"), "BERT layer, WebGPU vs CPU")
ok(f"zoo BERT layer on WebGPU matches the CPU reference (max difference {d:.2e})")

# ---- concurrency: 16 one-row requests, each gets its own row back ----
def metric(name, model="mlp"):
    text = raw("GET", "/metrics")[1].decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def async_row(k):
    # tritonclient.http is gevent-based: its own async_infer, not Python threads, sends
    # requests concurrently.
    i = thttp.InferInput("x", [1, 16], "FP32")
    i.set_data_from_numpy(X[k : k + 1])
    return h.async_infer("mlp", [i], outputs=[thttp.InferRequestedOutput("y")])


execs0, infs0 = metric("nv_inference_exec_count"), metric("nv_inference_count")
pending = [async_row(k) for k in range(16)]
for k, p in enumerate(pending):
    close(p.get_result().as_numpy("y"), Y[k : k + 1], f"concurrent request {k}")
execs, infs = metric("nv_inference_exec_count") - execs0, metric("nv_inference_count") - infs0
assert infs == 16 and execs < infs, (execs, infs)
ok(f"16 concurrent one-row requests each got their own row; {infs:.0f} inferences in {execs:.0f} executions")

# ---- the model configuration over gRPC (perf_analyzer reads it there), as over HTTP ----
gc = g.get_model_config("mlp", as_json=True)["config"]
assert gc["name"] == "mlp" and int(gc["max_batch_size"]) == cfg["max_batch_size"], gc
assert [(i["name"], i["data_type"], [int(d) for d in i["dims"]]) for i in gc["input"]] == [
    (i["name"], i["data_type"], i["dims"]) for i in cfg["input"]], (gc, cfg)
assert [int(p) for p in gc["dynamic_batching"]["preferred_batch_size"]] == [4, 16], gc
assert gc["instance_group"][0]["kind"] == cfg["instance_group"][0]["kind"], gc
try:
    g.get_model_config("nope")
    raise AssertionError("gRPC config of an unknown model was given")
except InferenceServerException as e:
    assert "NOT_FOUND" in str(e.status()), e
ok("tritonclient.grpc: the model configuration matches HTTP's")

# ---- the statistics extension, over both protocols, against the metrics ----
assert "statistics" in meta["extensions"], meta
hs = h.get_inference_statistics("mlp")["model_stats"]
gs = g.get_inference_statistics("mlp").model_stats
assert len(hs) == 1 and len(gs) == 1, (hs, gs)
hs, gs = hs[0], gs[0]
assert (hs["name"], hs["version"]) == ("mlp", "1") == (gs.name, gs.version), (hs, gs)
succ = hs["inference_stats"]["success"]
assert succ["count"] == metric("nv_inference_request_success") > 0, (succ, metric("nv_inference_request_success"))
assert hs["inference_count"] == metric("nv_inference_count"), hs
assert hs["execution_count"] == metric("nv_inference_exec_count") < hs["inference_count"], hs
assert hs["last_inference"] > 0 and succ["ns"] > 0, hs
batches = hs["batch_stats"]
assert sum(b["compute_infer"]["count"] for b in batches) == hs["execution_count"], batches
assert any(b["batch_size"] > 1 for b in batches), batches
assert hs["inference_stats"]["queue"]["count"] >= 16, hs
# Nothing ran between the two reads: the gRPC message says the same.
assert (gs.inference_count, gs.execution_count, gs.inference_stats.success.count) == (
    hs["inference_count"], hs["execution_count"], succ["count"]), gs
assert sorted(b.batch_size for b in gs.batch_stats) == sorted(b["batch_size"] for b in batches), gs
st, b, _ = raw("GET", "/v2/models/stats")
assert st == 200 and "mlp" in [m["name"] for m in json.loads(b)["model_stats"]], b
error_of(*raw("GET", "/v2/models/nope/stats")[:2], 404, "unknown model")
try:
    g.get_inference_statistics("nope")
    raise AssertionError("gRPC statistics of an unknown model were given")
except InferenceServerException as e:
    assert "NOT_FOUND" in str(e.status()), e
ok(f"statistics: {hs['inference_count']} inferences in {hs['execution_count']} executions, "
   f"batch sizes {sorted(b['batch_size'] for b in batches)}, the same over HTTP, gRPC and /metrics")

# ---- bad requests between good ones ----
x_json = lambda shape, dt="FP32", data=None: json.dumps(  # noqa: E731
    {"inputs": [{"name": "x", "shape": shape, "datatype": dt, "data": data if data is not None else [0.0] * int(np.prod(shape))}]}
).encode()
bad = [
    ("malformed JSON", "/v2/models/mlp/infer", b'{"inputs": [', {}, 400, ["malformed"]),
    ("an unknown field", "/v2/models/mlp/infer", b'{"inputs": [], "extra": 1}', {}, 400, ["unknown field"]),
    ("a wrong datatype", "/v2/models/mlp/infer", x_json([1, 16], "INT32", [0] * 16), {}, 400, ["INT32", "FP32"]),
    ("a wrong shape", "/v2/models/mlp/infer", x_json([1, 15]), {}, 400, ["[1, 15]", "[-1, 16]"]),
    ("too few elements", "/v2/models/mlp/infer", x_json([2, 16], data=[0.0] * 3), {}, 400, ["32 elements", "has 3"]),
    ("a batch over max_batch_size", "/v2/models/mlp/infer", x_json([17, 16]), {}, 400, ["batch 17"]),
    ("a tensor over the limit", "/v2/models/mlp/infer", x_json([1 << 20, 16], data=[]), {}, 413, ["limit"]),
    ("an unknown model", "/v2/models/nope/infer", x_json([1, 16]), {}, 404, ["nope"]),
    ("an unknown version", "/v2/models/mlp/versions/7/infer", x_json([1, 16]), {}, 404, ["version '7'"]),
    ("a model that failed to load", "/v2/models/broken/infer", x_json([1, 16]), {}, 503, ["broken", "not ready"]),
    ("a path outside the repository", "/v2/repository/models/..%2F..%2Fetc/load", b"", {}, 400, ["not a model name"]),
]
head = json.dumps({"inputs": [{"name": "x", "shape": [2, 16], "datatype": "FP32", "parameters": {"binary_data_size": 128}}]}).encode()
bad.append(("a truncated binary tensor", "/v2/models/mlp/infer", head + X[:1].tobytes(), {"Inference-Header-Content-Length": str(len(head))}, 400, ["binary_data_size is 128", "64 bytes"]))
for what, path, body, headers, status, says in bad:
    st, b, _ = raw("POST", path, body, {"Content-Type": "application/json", **headers})
    error_of(st, b, status, *says)
    good_http()
# A body over the limit is refused on its Content-Length, before any of it is read: the client
# sends the headers and 1 KiB of a declared 3 MiB, and the answer comes at once.
with socket.create_connection((HOST.split(":")[0], int(HOST.split(":")[1])), timeout=30) as s:
    s.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 3145728\r\n\r\n" + b" " * 1024)
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        chunk = s.recv(65536)
        if not chunk:
            break
        answer += chunk
status_line, _, rest = answer.partition(b"\r\n")
assert b" 413 " in status_line, answer[:200]
assert b"limit" in rest, answer[:400]
good_http()
bad.append(("a body over the limit", "", b"", {}, 413, []))
ok(f"{len(bad)} bad HTTP requests each got the protocol's status and error body; good requests between them answered right")

for what, fn, code in [
    ("unknown model", lambda: g.infer("nope", [tgrpc.InferInput("x", [1, 16], "FP32").set_data_from_numpy(X[:1])]), "NOT_FOUND"),
    ("wrong shape", lambda: g.infer("mlp", [tgrpc.InferInput("x", [1, 8], "FP32").set_data_from_numpy(X[:1, :8])]), "INVALID_ARGUMENT"),
    ("wrong dtype", lambda: g.infer("mlp", [tgrpc.InferInput("x", [1, 16], "FP64").set_data_from_numpy(X[:1].astype(np.float64))]), "INVALID_ARGUMENT"),
]:
    try:
        fn()
        raise AssertionError(f"gRPC {what} was accepted")
    except InferenceServerException as e:
        assert code in str(e.status()), f"gRPC {what}: {e.status()} {e.message()}"
    close(triton_grpc_infer(X[:2]), Y[:2], "gRPC after a bad request")
ok("bad gRPC requests got NOT_FOUND / INVALID_ARGUMENT; good ones between them answered right")

# ---- reloading a model while another serves ----
stop = threading.Event()
served, failed = [0], []


def keep_serving():
    while not stop.is_set():
        try:
            close(triton_grpc_infer(X[:1]), Y[:1], "during a reload")
            served[0] += 1
        except Exception as e:  # noqa: BLE001
            failed.append(repr(e))


t = threading.Thread(target=keep_serving)
t.start()
for _ in range(2):
    h.load_model("bert-cpu")
h.unload_model("bert-cpu")
assert not h.is_model_ready("bert-cpu")
h.load_model("bert-cpu")
assert h.is_model_ready("bert-cpu")
stop.set()
t.join()
assert not failed and served[0] > 0, (served, failed)
ok(f"bert-cpu reloaded twice, unloaded and loaded while mlp served {served[0]} requests, none failed")

# ---- the bearer token ----
st, b, _ = raw("POST", "/v2/models/mlp/infer", x_json([1, 16]), {}, url=TOKEN_HTTP)
error_of(st, b, 401, "bearer")
st, b, _ = raw("POST", "/v2/models/mlp/infer", x_json([1, 16]), {"Authorization": "Bearer wrong"}, url=TOKEN_HTTP)
error_of(st, b, 401)
st, _, _ = raw("GET", "/v2/health/ready", url=TOKEN_HTTP)
assert st == 200, st
st, b, _ = raw("GET", "/metrics", url=TOKEN_HTTP)
assert st == 401, st
th = thttp.InferenceServerClient(TOKEN_HTTP.removeprefix("http://"))
i = thttp.InferInput("x", [2, 16], "FP32")
i.set_data_from_numpy(X[:2])
close(th.infer("mlp", [i], headers={"Authorization": f"Bearer {TOKEN}"}).as_numpy("y"), Y[:2], "with the token")
tg = tgrpc.InferenceServerClient(TOKEN_GRPC)
gi = tgrpc.InferInput("x", [2, 16], "FP32")
gi.set_data_from_numpy(X[:2])
try:
    tg.infer("mlp", [gi])
    raise AssertionError("gRPC without the token was accepted")
except InferenceServerException as e:
    assert "UNAUTHENTICATED" in str(e.status()), e
close(tg.infer("mlp", [gi], headers={"authorization": f"Bearer {TOKEN}"}).as_numpy("y"), Y[:2], "gRPC with the token")
ok("the token: 401 / UNAUTHENTICATED without it or with a wrong one, served with it; health probes open")
print("all client checks passed", flush=True)
