"""KServe's own clients against `sfumato serve`, run by serve_clients.py in a process of its own
(kserve and tritonclient.grpc register the protocol's protobuf messages under the same names).

    python serve_kserve.py HTTP_URL GRPC_ADDR WORKDIR   (WORKDIR holds x.npy and expected/y.npy)
"""

import asyncio
import sys
from pathlib import Path

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

HTTP, GRPC, WORK = sys.argv[1], sys.argv[2], Path(sys.argv[3])
X = np.load(WORK / "x.npy")
Y = np.load(WORK / "expected" / "y.npy")


def close(a, b, what):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}"
    d = float(np.max(np.abs(a - b)))
    assert d <= 1e-4 * max(1.0, float(np.max(np.abs(b)))), f"{what}: max difference {d}"


async def main():
    rest = InferenceRESTClient(RESTConfig(protocol="v2"))
    inp = InferInput("x", [3, 16], "FP32")
    inp.set_data_from_numpy(X[6:9], binary_data=False)
    r = await rest.infer(HTTP, InferRequest(model_name="mlp", infer_inputs=[inp]), model_name="mlp")
    close(r.outputs[0].as_numpy(), Y[6:9], "kserve REST (JSON)")
    inp = InferInput("x", [2, 16], "FP32")
    inp.set_data_from_numpy(X[9:11], binary_data=True)
    r = await rest.infer(HTTP, InferRequest(model_name="mlp", infer_inputs=[inp]), model_name="mlp")
    close(r.outputs[0].as_numpy(), Y[9:11], "kserve REST (binary)")
    assert await rest.is_server_ready(HTTP) and await rest.is_model_ready(HTTP, "mlp")
    await rest.close()
    gc = InferenceGRPCClient(GRPC, retries=0)
    inp = InferInput("x", [4, 16], "FP32")
    inp.set_data_from_numpy(X[11:15])
    r = await gc.infer(InferRequest(model_name="mlp", infer_inputs=[inp]))
    close(r.outputs[0].as_numpy(), Y[11:15], "kserve gRPC")
    assert await gc.is_server_live() and await gc.is_model_ready("mlp")
    await gc.close()
    print("ok: kserve clients", flush=True)


asyncio.run(main())
