"""The models a device has run, and which one it uses: install, list, roll back (``edge-app model ...``).

A model is named by the SHA-256 of its ``model_card.json`` (the card names every artifact's hash, so the card's
hash names the whole model). The store keeps a row per model (``models``: its card as JSON, its parent from the
card's lineage) and every run names the card it ran (``runs.card_sha256``), so a slide record keeps the model
that made it whatever the device runs later. ``install`` copies the model folder into ``STORE/models/<hash>/``
and makes it the one in use; ``rollback`` returns to the model in use before it. The model in use follows from
the events alone: install pushes a model on a stack, rollback pops one.

    edge-app model install models/lite0-ft --out cytoedge-data
    edge-app model list --out cytoedge-data
    edge-app model rollback --out cytoedge-data
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cytoedge.edge_app.atomic import sha256_file
from cytoedge.edge_app.card import card_path, load_card
from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.formats import get_format
from cytoedge.edge_app.store import Store, db_errors, now_iso

MODELS_DIR = "models"
EXTRA_FILES = ("model_card.json.sig", "reliability.png")  # beside the card, copied when present


class ModelRegistryError(CytoEdgeError):
    """A model cannot be installed or rolled back (one line: what is wrong and what to do)."""


@dataclass(frozen=True)
class ModelRecord:
    card_sha256: str
    architecture: str
    folder: str
    first_seen: str
    parent_card_sha256: str | None
    in_use: bool = False

    def path(self, store: Store) -> Path:
        p = Path(self.folder)
        return p if p.is_absolute() else store.folder / p


def card_sha256(model_dir: str | Path) -> str:
    return sha256_file(card_path(model_dir))


def _parent_of(card: Any) -> str | None:
    parent = ((card.source or {}).get("lineage") or {}).get("parent") or {}
    return parent.get("card_sha256") or None


@db_errors
def remember_model(store: Store, model_dir: str | Path, folder: str | None = None) -> str:
    """Record the model of ``model_dir`` (once; a later call keeps the first row); its card hash."""
    card = load_card(model_dir)
    sha = card_sha256(model_dir)
    raw = card_path(model_dir).read_text(encoding="utf-8")
    with store.transaction():
        store.conn.execute(
            "INSERT OR IGNORE INTO models (card_sha256, architecture, folder, first_seen, parent_card_sha256, card) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (sha, card.architecture, folder or str(Path(model_dir).resolve()), now_iso(), _parent_of(card), raw))
        if folder:  # installed: its own copy in the store from now on
            store.conn.execute("UPDATE models SET folder = ? WHERE card_sha256 = ?", (folder, sha))
    return sha


def _stack(store: Store) -> list[str]:
    stack: list[str] = []
    for r in store.conn.execute("SELECT card_sha256, action FROM model_events ORDER BY id"):
        if r["action"] == "install":
            stack.append(r["card_sha256"])
        elif r["action"] == "rollback" and len(stack) > 1:
            stack.pop()
    return stack


@db_errors
def list_models(store: Store) -> list[ModelRecord]:
    """Every model of the store, oldest first; ``in_use`` marks the one edge-app runs without ``--model``."""
    stack = _stack(store)
    current = stack[-1] if stack else None
    return [ModelRecord(r["card_sha256"], r["architecture"], r["folder"], r["first_seen"], r["parent_card_sha256"],
                        r["card_sha256"] == current)
            for r in store.conn.execute("SELECT * FROM models ORDER BY first_seen, rowid")]


def model_in_use(store: Store) -> ModelRecord | None:
    return next((m for m in list_models(store) if m.in_use), None)


@db_errors
def install_model(store: Store, model_dir: str | Path) -> ModelRecord:
    """Copy ``model_dir`` (its card and the artifacts it names, hashes checked) into the store; make it current."""
    src = Path(model_dir)
    card = load_card(src)
    # the device's artifacts must be there and sound; the others (ONNX, the torch bundle) travel when present
    kept = [e for e in card.artifacts.values() if get_format(e.format).device or (src / e.file).is_file()]
    for entry in kept:
        card.verify_artifact(entry.format)  # a damaged artifact is refused before anything is copied
    sha = card_sha256(src)
    rel = f"{MODELS_DIR}/{sha[:16]}"
    dest = store.folder / rel
    if not (dest / card_path(src).name).is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            names = [card_path(src).name, *{e.file for e in kept},
                     *(n for n in EXTRA_FILES if (src / n).is_file())]
            for name in names:
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / name, staging / name)
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    remember_model(store, dest, rel)
    with store.transaction():
        store.conn.execute("INSERT INTO model_events (card_sha256, at, action) VALUES (?, ?, 'install')",
                           (sha, now_iso()))
    return model_in_use(store)  # type: ignore[return-value]


@db_errors
def rollback_model(store: Store) -> tuple[ModelRecord, ModelRecord]:
    """Return to the model in use before the current one: (the one left, the one now in use)."""
    stack = _stack(store)
    if len(stack) < 2:
        what = "no model is installed" if not stack else "only one model was ever installed"
        raise ModelRegistryError(f"nothing to roll back to in {store.folder}: {what} (install one with "
                                 f"edge-app model install MODEL_DIR --out {store.folder})")
    left = model_in_use(store)
    with store.transaction():
        store.conn.execute("INSERT INTO model_events (card_sha256, at, action) VALUES (?, ?, 'rollback')",
                           (stack[-2], now_iso()))
    now = model_in_use(store)
    assert left is not None and now is not None
    return left, now


def installed_model_dir(store_folder: str | Path) -> Path:
    """The folder of the model in use of the store at ``store_folder`` (edge-app without ``--model``)."""
    folder = Path(store_folder)
    hint = (f"pass --model MODEL_DIR, or install one into the store with edge-app model install MODEL_DIR "
            f"--out {folder}")
    if not (folder / "cytoedge.sqlite").is_file():
        raise ModelRegistryError(f"no --model given and no store at {folder}: {hint}")
    with Store(folder, create=False) as store:
        m = model_in_use(store)
        if m is None:
            raise ModelRegistryError(f"no --model given and no model installed in {folder}: {hint}")
        return m.path(store)


def runs_by_model(store: Store, slide_id: str | None = None) -> list[dict[str, Any]]:
    """Per run: slide, run id, the card hash of the model that made it, and its frame and cell counts."""
    sql = ("SELECT r.id AS run, r.slide_id AS slide, r.card_sha256 AS card_sha256, "
           "(SELECT COUNT(*) FROM frames f WHERE f.run_id = r.id) AS frames, "
           "(SELECT COUNT(*) FROM cells c JOIN frames f ON c.frame_id = f.id WHERE f.run_id = r.id) AS cells "
           "FROM runs r" + (" WHERE r.slide_id = ?" if slide_id else "") + " ORDER BY r.id")
    return [dict(r) for r in store.conn.execute(sql, (slide_id,) if slide_id else ())]


def card_of(store: Store, sha: str) -> dict[str, Any]:
    """The card a model had when the store first saw it (kept in the store, not read from its folder)."""
    row = store.conn.execute("SELECT card FROM models WHERE card_sha256 = ?", (sha,)).fetchone()
    if row is None:
        raise ModelRegistryError(f"no model {sha[:12]} in {store.folder}: see edge-app model list")
    return json.loads(row["card"])
