"""Checks netc's ONNX exports with ONNX's checker and ONNX Runtime.

Usage: onnx_check.py DIR TOLERANCE, with DIR as crates/netc-onnx/tests/onnxruntime.rs writes it:
cases.tsv (index, input shape, classes, name per line) and, per case, INDEX.onnx, INDEX.input
(the raw input) and INDEX.logits (netc's logits), both little-endian float32. Prints each case's
largest difference, then a summary line; exits 1 if any case fails.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime


def check(folder: Path, index: str, shape: list[int], classes: int, tolerance: float) -> str | None:
    """The reason a case fails, or None."""
    model = onnx.load(folder / f"{index}.onnx")
    onnx.checker.check_model(model, full_check=True)
    if model.opset_import[0].version != 17:
        return f"opset {model.opset_import[0].version}, not 17"
    inputs = np.fromfile(folder / f"{index}.input", dtype="<f4").reshape(shape)
    expected = np.fromfile(folder / f"{index}.logits", dtype="<f4").reshape(shape[0], classes)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {session.get_inputs()[0].name: inputs})
    difference = float(np.max(np.abs(logits - expected)))
    largest = float(np.max(np.abs(expected)))
    print(f"  max |onnxruntime - netc| = {difference:.2e} (largest logit {largest:.3f})")
    # As the Rust tests: absolute below logits of 1, relative to the largest logit above.
    return None if difference <= tolerance * max(1.0, largest) else f"logits differ by {difference:.2e}"


def main() -> int:
    folder, tolerance = Path(sys.argv[1]), float(sys.argv[2])
    print(f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}")
    passed = failed = 0
    for line in (folder / "cases.tsv").read_text().splitlines():
        index, shape, classes, name = line.split("\t")
        print(f"{name}:")
        try:
            problem = check(folder, index, [int(d) for d in shape.split(",")], int(classes), tolerance)
        except Exception as error:  # the checker's and the runtime's errors alike fail the case
            problem = f"{type(error).__name__}: {error}"
        if problem is None:
            passed += 1
        else:
            failed += 1
            print(f"  FAILED: {problem}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
