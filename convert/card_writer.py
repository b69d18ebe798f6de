"""Model card and artifact metadata: what the device and the benchmark read about each file."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from cytoedge.edge_app.atomic import atomic_write_bytes, sha256_file
from cytoedge.edge_app.card import SCHEMA_VERSION, ArtifactEntry, ModelCard, TensorSpec, describe_artifact
from cytoedge.edge_app.classes import default_groups
from cytoedge.edge_app.formats import get_format

TOOLS = ("cytoedge", "torch", "torchvision", "timm", "onnx", "onnxruntime", "onnxsim", "onnx2tf", "tensorflow",
         "ai-edge-litert", "numpy", "opencv-python")
BUNDLE_FILES = ("weights.pt", "bundle.json", "split.json")


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools that shaped the artifacts (absent ones are left out)."""
    found = {}
    for name in TOOLS:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def source_record(bundle: Any) -> dict[str, Any]:
    """Where the model came from: the bundle folder, its hashes, fold and training metrics."""
    meta = bundle.path("bundle.json")
    return {
        "bundle": str(Path(bundle.directory).resolve()),
        "bundle_json_sha256": sha256_file(meta),
        "weights_sha256": sha256_file(bundle.path("weights.pt")),
        "fold": bundle.fold,
        "folds": bundle.folds,
        "created": bundle.created,
        "threshold_quantile": bundle.threshold_quantile,
        "training_metrics": bundle.metrics,
        "training_centroid_threshold": bundle.threshold,
        "lineage": bundle.lineage,  # a fine-tune's parent model (card and bundle hashes) and review set
    }


def onnx_metadata(bundle: Any, source: dict[str, Any], space: str, created: str) -> dict[str, str]:
    """The essentials carried inside every ONNX file (``metadata_props``): enough to use it without the card."""
    spec = bundle.preprocessing
    return {
        "cytoedge.card_schema_version": str(SCHEMA_VERSION),
        "architecture": bundle.architecture,
        "class_names": json.dumps(bundle.class_names),
        "class_groups": json.dumps(bundle.class_groups or default_groups(bundle.class_names)),
        "embedding_dim": str(bundle.embedding_dim),
        "embedding": bundle.embedding,  # l2 / bnneck / raw: the space the centroids and the threshold live in
        "input_size": str(spec.size),
        "preprocessing": json.dumps(spec.to_dict()),
        "mean": json.dumps(list(spec.mean)),
        "std": json.dumps(list(spec.std)),
        "input_space": space,
        "outputs": "logits,embedding",
        "bundle_json_sha256": source["bundle_json_sha256"],
        "weights_sha256": source["weights_sha256"],
        "created": created,
        "cytoedge_version": tool_versions().get("cytoedge", ""),
    }


def copy_bundle(bundle: Any, out: Path) -> Path:
    """Copy weights.pt, bundle.json (and split.json) into ``out/bundle/`` so the torch row runs from the model folder."""
    dest = out / "bundle"
    for name in BUNDLE_FILES:
        src = bundle.path(name)
        if src.is_file():
            atomic_write_bytes(dest / name, src.read_bytes())
    return dest / "weights.pt"


def torch_like_specs(bundle: Any, batch: int) -> tuple[TensorSpec, dict[str, TensorSpec]]:
    """NCHW float specs of the PyTorch model and the ONNX file (``batch`` -1 where dynamic)."""
    s = bundle.preprocessing.size
    inp = TensorSpec(name="input", shape=[batch, 3, s, s], layout="NCHW", space="normalized", index=0)
    outs = {"logits": TensorSpec(name="logits", shape=[batch, bundle.num_classes], index=0),
            "embedding": TensorSpec(name="embedding", shape=[batch, bundle.embedding_dim], index=1)}
    return inp, outs


def artifact_entry(fmt: str, out: Path, inp: TensorSpec, outputs: dict[str, TensorSpec], max_batch: int,
                   score: Any) -> ArtifactEntry:
    """One card entry: file, hash and size, I/O specs, this artifact's open-set score and temperature, validation."""
    rel = get_format(fmt).file
    sha, size = describe_artifact(out / rel)
    return ArtifactEntry(format=fmt, file=rel, sha256=sha, size_bytes=size, input=inp, outputs=outputs,
                         max_batch=max_batch, open_set=score.open_set, calibration=dict(score.calibration),
                         validation=dict(score.metrics), status=score.status, status_reason=score.status_reason)


RELIABILITY_PLOT = "reliability.png"


def reliability_plot(calibrations: dict[str, dict[str, Any]], out: Path) -> Path | None:
    """``reliability.png`` beside the card: per artifact, accuracy per confidence bin before and after scaling."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    n = len(calibrations)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    for ax, (fmt, cal) in zip(axes[0], calibrations.items()):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
        for key, colour, label in (("reliability_before", "0.55", f"raw, ECE {cal['ece_before']:.3f}"),
                                   ("reliability_after", "tab:blue", f"T={cal['temperature']:.2f}, ECE {cal['ece_after']:.3f}")):
            rows = [r for r in cal[key] if r["n"]]
            ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], "o-", color=colour, label=label,
                    ms=3)
        ax.set(title=fmt, xlabel="confidence", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("accuracy")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    path = out / RELIABILITY_PLOT
    atomic_write_bytes(path, buf.getvalue())
    return path


def build_card(bundle: Any, artifacts: dict[str, ArtifactEntry], source: dict[str, Any],
               validation: dict[str, Any], created: str) -> ModelCard:
    return ModelCard(architecture=bundle.architecture, class_names=list(bundle.class_names),
                     class_groups=dict(bundle.class_groups), preprocessing=bundle.preprocessing,
                     embedding_dim=bundle.embedding_dim, artifacts=artifacts, source=source,
                     validation=validation, tools=tool_versions(), created=created)
