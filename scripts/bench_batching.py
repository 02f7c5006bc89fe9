#!/usr/bin/env python3
"""Pipeline throughput at detector batch 1 vs batch N across N sources of vtest.avi.

The sample detector is a static batch-1 export; this script writes a
dynamic-batch copy of it (input/output batch dims made symbolic, the head's
Reshape constants told to copy the batch dim) into a temp dir, checks that
batched outputs equal one-by-one outputs, then runs the real pipeline with N
file sources at ``batch: 1`` and ``batch: N`` and prints frames/s.

    python scripts/bench_batching.py [--sources 4] [--frames 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np


def dynamic_batch_copy(src: Path, dst: Path, batch: int) -> Path:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(src))
    for vi in (m.graph.input[0], m.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_param = "batch"
    del m.graph.value_info[:]
    inits = {i.name: i for i in m.graph.initializer}
    for node in m.graph.node:
        init = inits.get(node.input[1]) if node.op_type == "Reshape" else None
        if init is not None:
            shape = numpy_helper.to_array(init).copy()
            if shape[0] == 1:
                shape[0] = 0  # Reshape: 0 copies the input's batch dim
                init.CopyFrom(numpy_helper.from_array(shape, init.name))
    for p in m.metadata_props:
        if p.key == "batch":
            p.value = str(batch)
    onnx.save(m, str(dst))
    return dst


def _check(src: Path, dyn: Path, batch: int) -> float:
    import onnxruntime as ort

    one = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    many = ort.InferenceSession(str(dyn), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((batch, 3, 640, 640), dtype=np.float32)
    ref = np.concatenate([one.run(None, {"images": x[i : i + 1]})[0] for i in range(batch)])
    return float(np.abs(many.run(None, {"images": x})[0] - ref).max())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=4)
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()

    from edgewatch.config import parse_config
    from edgewatch.pipeline.runner import Pipeline
    from edgewatch.samples import fetch_samples

    s = fetch_samples()
    with tempfile.TemporaryDirectory() as tmp:
        dyn = dynamic_batch_copy(s.model, Path(tmp) / "dyn.onnx", args.sources)
        print(f"dynamic-batch copy: max |batched - one by one| = {_check(s.model, dyn, 2):.2e}")
        srcs = "\n".join(
            f"  - {{id: cam{i}, uri: '{s.video}', max_frames: {args.frames}}}"
            for i in range(args.sources)
        )
        for batch in (1, args.sources):
            cfg = parse_config(
                f"sources:\n{srcs}\ndetector: {{model: '{dyn}', batch: {batch}}}\n"
                "tracker: {type: bytetrack}\n"
            )
            r = Pipeline(cfg).run()
            print(
                f"batch {batch}: {r.total_frames} frames in {r.elapsed_s:.1f} s = {r.fps:.2f} "
                f"frames/s (inference {r.stage_ms.get('inference', 0):.1f} ms/frame)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
