"""One result file per run, keyed by a hash of its settings, shared by the image, STS and OOD studies.

A study describes each run by a flat ``settings`` dict (method, data, budget, seed, every loss option). The store
keeps ``results/runs/<study>/<key>.json`` with the settings, the result, the command and the software versions;
a run whose file exists is skipped, so a study that needs several sittings resumes where it stopped, and each
stored file can be committed as soon as it is written.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import uuid
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RUNS = Path(__file__).resolve().parent / "results" / "runs"


def settings_key(settings: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the settings as canonical JSON (key order does not matter)."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class RunStore:
    """The stored runs of one study (``results/runs/<study>/``)."""

    def __init__(self, study: str, root: Path = RUNS) -> None:
        if not study or "/" in study:
            raise ValueError(f"`study` must be a plain folder name, got {study!r}.")
        self.folder = root / study

    def path(self, settings: dict[str, Any]) -> Path:
        return self.folder / f"{settings_key(settings)}.json"

    def load(self, settings: dict[str, Any]) -> dict[str, Any] | None:
        """The stored record of these settings, or ``None``. A file whose settings differ is an error (a key
        collision or a hand-edited file), never silently reused."""
        path = self.path(settings)
        if not path.exists():
            return None
        record = read_record(path)
        if record.get("settings") != settings:
            raise ValueError(f"{path}: stored settings {record.get('settings')} differ from the requested {settings}.")
        return record

    def save(self, settings: dict[str, Any], result: dict[str, Any], seconds: float) -> dict[str, Any]:
        import torch

        result, non_finite = mark_non_finite(result)
        if non_finite:  # a diverged run is a result too: stored, with the values that were NaN / inf named
            print(f"warning: run {settings_key(settings)} has non-finite values at {non_finite}; stored as null",
                  file=sys.stderr)  # fmt: skip
        record = {
            "key": settings_key(settings),
            "settings": settings,
            "result": result,
            **({"non_finite": non_finite} if non_finite else {}),
            "seconds": round(seconds, 2),
            "command": " ".join(["python", *sys.argv]),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(settings)
        # a name of this writer's own: two processes saving the same run never write into one temporary file
        temporary = path.with_suffix(f".{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        temporary.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
        temporary.replace(path)  # a run interrupted while writing leaves no half file
        return record

    def run(self, settings: dict[str, Any], compute: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """The stored record, or ``compute(settings)`` stored and returned."""
        record = self.load(settings)
        if record is not None:
            return record
        started = time.perf_counter()
        result = compute(settings)
        return self.save(settings, result, time.perf_counter() - started)

    def records(self) -> list[dict[str, Any]]:
        """Every stored record of the study."""
        return [read_record(p) for p in sorted(self.folder.glob("*.json"))]


def read_record(path: Path) -> dict[str, Any]:
    """A stored record; a file that is not valid JSON (truncated by a full disk, hand-edited) is named in the error."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not a valid run record ({error}); it may be truncated: delete it to run that setting again."
        ) from None


def mark_non_finite(value: Any, where: str = "") -> tuple[Any, list[str]]:
    """``value`` with NaN / inf floats replaced by ``None`` (JSON has no NaN), and the dotted paths of those floats.

    Example:
        >>> mark_non_finite({"dev": float("nan"), "test": {"f1": 0.5}})
        ({'dev': None, 'test': {'f1': 0.5}}, ['dev'])
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None, [where or "result"]
    if isinstance(value, dict):
        cleaned, found = {}, []
        for key, item in value.items():
            cleaned[key], paths = mark_non_finite(item, f"{where}.{key}" if where else str(key))
            found += paths
        return cleaned, found
    if isinstance(value, (list, tuple)):
        cleaned_items, found = [], []
        for index, item in enumerate(value):
            item, paths = mark_non_finite(item, f"{where}[{index}]")
            cleaned_items.append(item)
            found += paths
        return cleaned_items, found
    return value, []
