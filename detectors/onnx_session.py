"""How every ONNX plugin opens its model on an edge box's CPU."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def cpu_session(model: Path, threads: int) -> ort.InferenceSession:
    """An onnxruntime session on ``threads`` CPU threads that do not spin.

    By default onnxruntime's idle worker threads spin-wait for the next
    run. On a box whose cores also decode video, encode clips and serve other
    cameras, that spinning takes CPU from them, so it is turned off: the cost
    is a little wake-up latency per inference.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
