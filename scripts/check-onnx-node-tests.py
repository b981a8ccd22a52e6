#!/usr/bin/env python3
"""Compare a generated ONNX conformance suite with a reference one, case by case.

Usage:  python3 scripts/check-onnx-node-tests.py GENERATED REFERENCE
A case is a folder directly under each root; every file inside it (model.onnx, test_data_set_*/*.pb)
must exist on both sides with equal bytes, except expected outputs (output_*.pb) of a float dtype,
which may differ by at most MAX_ULP units in the last place: numpy's transcendental functions and
OpenBLAS pick code paths by CPU (AVX-512 or not), so the same pinned packages write such values 1-2
ulp apart on different machines (a value that sums terms to near 0 may differ by MAX_ULP of the
tensor's largest value). Dtype, shape, NaN positions and every non-float value must match.
Files at the roots themselves (e.g. README.md) are ignored. Needs numpy and onnx only for that
float comparison. Exits 0 with "N cases equal", or 1 after listing each missing case, extra case
and differing file.
"""
import pathlib
import sys


def cases(root):
    return {p.name: p for p in root.iterdir() if p.is_dir()}


def files(case):
    return {str(p.relative_to(case)): p for p in case.rglob("*") if p.is_file()}


MAX_ULP = 4


def close_floats(a_path, b_path):
    """Whether two TensorProto files hold the same float tensor within MAX_ULP (else False)."""
    try:
        import numpy as np
        from onnx import TensorProto, numpy_helper
    except ImportError:
        return False
    a, b = TensorProto(), TensorProto()
    try:
        a.ParseFromString(a_path.read_bytes())
        b.ParseFromString(b_path.read_bytes())
    except Exception:
        return False
    if a.data_type != b.data_type or list(a.dims) != list(b.dims) or a.name != b.name:
        return False
    if a.data_type not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
        return False
    x, y = numpy_helper.to_array(a), numpy_helper.to_array(b)
    if not np.array_equal(np.isnan(x), np.isnan(y)):
        return False
    fin = ~np.isnan(x)
    if not np.array_equal(np.isinf(x[fin]) * np.sign(x[fin]), np.isinf(y[fin]) * np.sign(y[fin])):
        return False
    ok = np.isfinite(x)
    if not ok.any():
        return True
    # Within MAX_ULP of each value, or (sums that cancel to near 0) of the tensor's largest.
    big = np.maximum(np.abs(x[ok]), np.abs(y[ok]))
    tol = np.maximum(MAX_ULP * np.spacing(big), MAX_ULP * np.spacing(big.max()))
    return bool(np.all(np.abs(x[ok] - y[ok]) <= tol))


def same(gen_file, ref_file, name):
    if gen_file.read_bytes() == ref_file.read_bytes():
        return True
    return pathlib.PurePath(name).name.startswith("output_") and close_floats(gen_file, ref_file)


def compare(gen_case, ref_case):
    """Lines describing how one case differs; empty when it is equal."""
    gen, ref = files(gen_case), files(ref_case)
    lines = [f"  missing file {f}" for f in sorted(ref.keys() - gen.keys())]
    lines += [f"  extra file {f}" for f in sorted(gen.keys() - ref.keys())]
    lines += [f"  differs: {f}" for f in sorted(gen.keys() & ref.keys())
              if not same(gen[f], ref[f], f)]
    return lines


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    gen, ref = (pathlib.Path(a) for a in sys.argv[1:])
    for root in (gen, ref):
        if not root.is_dir():
            sys.exit(f"not a folder: {root}")
    gen_cases, ref_cases = cases(gen), cases(ref)
    problems = 0
    for name in sorted(ref_cases.keys() - gen_cases.keys()):
        print(f"missing case {name}")
        problems += 1
    for name in sorted(gen_cases.keys() - ref_cases.keys()):
        print(f"extra case {name}")
        problems += 1
    for name in sorted(gen_cases.keys() & ref_cases.keys()):
        lines = compare(gen_cases[name], ref_cases[name])
        if lines:
            print(f"case {name} differs:", *lines, sep="\n")
            problems += 1
    if problems:
        print(f"{problems} cases not equal ({len(gen_cases)} generated, {len(ref_cases)} in the reference)")
        sys.exit(1)
    print(f"{len(ref_cases)} cases equal")


if __name__ == "__main__":
    main()
