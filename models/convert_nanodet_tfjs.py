"""Convert the NanoDet-m TF.js graph model to ONNX, with a byte-reproducible result.

Run by ``models/convert_nanodet.sh`` inside the throw-away conversion venv:

    python convert_nanodet_tfjs.py MODEL_JSON OUTPUT_ONNX [--opset 13]

Two things are added on top of plain ``python -m tf2onnx.convert --tfjs ...``:

1. ``np.product`` is aliased to ``np.prod`` when missing: tf2onnx 1.17 still
   calls ``np.product``, which numpy 2 removed (the pinned numpy 1.26 has it;
   the alias only matters if someone bumps numpy).
2. tf2onnx names the tensors it creates from counters whose order depends on
   object identity, so two runs give the same graph under different internal
   names (and a different sha256). ``canonicalize`` renames every node and
   internal tensor from the graph's structure alone, leaving the graph input
   and output names untouched, so the file hash is stable across runs.
   The graph doc_string (tf2onnx puts the input path there) is fixed too.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np

if not hasattr(np, "product"):  # numpy >= 2 removed it; tf2onnx 1.17 uses it
    np.product = np.prod  # type: ignore[attr-defined]

import onnx  # after the alias on purpose
from onnx import GraphProto, ModelProto


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x00")
    return h.hexdigest()


def canonicalize(model: ModelProto) -> None:
    """Rename nodes, initializers and internal tensors deterministically, in place."""
    graph: GraphProto = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}

    # Structural signature of every tensor: graph inputs by name, initializers
    # by content, node outputs by (op, attributes, input signatures, index).
    sig: dict[str, str] = {"": ""}
    for v in graph.input:
        sig[v.name] = _digest("input", v.name)
    for t in graph.initializer:
        body = onnx.TensorProto()
        body.CopyFrom(t)
        body.name = ""
        sig[t.name] = _digest("init", body.SerializeToString(deterministic=True))

    pending = list(graph.node)
    ordered: list[tuple[str, onnx.NodeProto]] = []
    while pending:  # topological order, ties broken by signature
        ready = [n for n in pending if all(i in sig for i in n.input)]
        if not ready:
            raise RuntimeError("graph is not a DAG or has unknown inputs")
        scored = []
        for n in ready:
            attrs = [
                a.SerializeToString(deterministic=True)
                for a in sorted(n.attribute, key=lambda a: a.name)
            ]
            scored.append((_digest(n.op_type, n.domain, *attrs, *(sig[i] for i in n.input)), n))
        scored.sort(key=lambda s: s[0])
        for node_sig, n in scored:
            for k, out in enumerate(n.output):
                sig[out] = _digest(node_sig, str(k))
            ordered.append((node_sig, n))
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]

    sigs = [s for s, _ in ordered]
    if len(set(sigs)) != len(sigs):
        raise RuntimeError("duplicate nodes: canonical naming would be ambiguous")

    rename: dict[str, str] = {}
    inits = sorted(graph.initializer, key=lambda t: sig[t.name])
    for i, t in enumerate(inits):
        if t.name not in keep:
            rename[t.name] = f"const_{i}"
    for i, (_, n) in enumerate(ordered):
        n.name = f"{n.op_type.lower()}_{i}"
        for k, out in enumerate(n.output):
            if out and out not in keep:
                rename[out] = f"{n.name}:{k}"

    def fix(name: str) -> str:
        return rename.get(name, name)

    for _, n in ordered:
        n.input[:] = [fix(x) for x in n.input]
        n.output[:] = [fix(x) for x in n.output]
    for t in inits:
        t.name = fix(t.name)
    value_info = sorted((v for v in graph.value_info), key=lambda v: fix(v.name))
    for v in value_info:
        v.name = fix(v.name)

    nodes = [n for _, n in ordered]
    for field, items in (("node", nodes), ("initializer", inits), ("value_info", value_info)):
        copies = [type(x)() for x in items]
        for c, x in zip(copies, items, strict=True):
            c.CopyFrom(x)
        graph.ClearField(field)
        getattr(graph, field).extend(copies)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_json", type=Path, help="TF.js graph model (model.json)")
    parser.add_argument("output", type=Path, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=13)
    parser.add_argument(
        "--doc",
        default=None,
        help="graph doc_string (tf2onnx's default embeds the varying input path)",
    )
    args = parser.parse_args(argv)

    from tf2onnx import convert  # imports TensorFlow: slow, so only here

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        sys.argv = [
            "tf2onnx.convert",
            "--tfjs",
            str(args.model_json),
            "--opset",
            str(args.opset),
            "--output",
            str(raw),
        ]
        convert.main()
        model = onnx.load(str(raw))

    canonicalize(model)
    model.graph.doc_string = args.doc or f"converted from {args.model_json.name} with tf2onnx"
    onnx.checker.check_model(model, full_check=True)
    args.output.write_bytes(model.SerializeToString(deterministic=True))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
