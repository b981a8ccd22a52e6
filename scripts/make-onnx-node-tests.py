#!/usr/bin/env python3
"""Write the ONNX operator conformance cases that `sfumato conformance` runs.

Each case of ONNX's own node tests (`onnx.backend.test.case.node`) becomes a folder:
    OUT/<case>/model.onnx
    OUT/<case>/test_data_set_<k>/input_<j>.pb    (graph inputs, in order)
    OUT/<case>/test_data_set_<k>/output_<j>.pb   (expected outputs, from ONNX's numpy reference)

Usage:  pip install -r scripts/onnx-node-tests-requirements.txt && python3 scripts/make-onnx-node-tests.py OUT
Those pins give the same 1,884 cases the README's figures were measured on (check with
scripts/check-onnx-node-tests.py OUT ../shared/onnx-node-tests).
"""
import pathlib
import sys

import numpy as np
from onnx import TensorProto, numpy_helper
from onnx.backend.test.case.node import collect_testcases


def encode(value, decl):
    """Serialize one input or output value by the type the graph declares for it, named after it."""
    name = decl.name if decl is not None else ""
    kind = decl.type.WhichOneof("value") if decl is not None else "tensor_type"
    if isinstance(value, TensorProto):  # exotic dtypes come already encoded
        return value.SerializeToString()
    if kind == "sequence_type":
        return numpy_helper.from_list(list(value), name).SerializeToString()
    if kind == "optional_type":
        return numpy_helper.from_optional(value, name).SerializeToString()
    if kind == "map_type":
        return numpy_helper.from_dict(value, name).SerializeToString()
    return numpy_helper.from_array(np.asarray(value), name).SerializeToString()


def write_case(case, out):
    folder = out / case.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(case.model.SerializeToString())
    graph = case.model.graph
    for k, (inputs, outputs) in enumerate(case.data_sets or []):
        data = folder / f"test_data_set_{k}"
        data.mkdir(exist_ok=True)
        for side, values, decls in (("input", inputs, graph.input), ("output", outputs, graph.output)):
            for j, value in enumerate(values):
                decl = decls[j] if j < len(decls) else None
                try:
                    (data / f"{side}_{j}.pb").write_bytes(encode(value, decl))
                except Exception as e:  # a value numpy_helper cannot encode: the case says so
                    print(f"{case.name}: {side} {j} not written: {e}", file=sys.stderr)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = pathlib.Path(sys.argv[1])
    cases = [c for c in collect_testcases() if c.kind == "node"]
    for c in cases:
        write_case(c, out)
    print(f"{len(cases)} cases written to {out}")


if __name__ == "__main__":
    main()
