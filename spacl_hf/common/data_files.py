"""Readers for the project's local data files (STS-B and NLI TSV), standard library only.

The TSV files have a header row, TAB separators and no quoting (sentences may contain ``"``).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

DEFAULT_DATA_DIR_CANDIDATES = ("../shared/data", "../../shared/data")


def find_data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The data folder: ``explicit``, else ``$SPACL_DATA_DIR``, else ``../shared/data`` near the working
    directory or this checkout; ``None`` when none exists."""
    options = [explicit, os.environ.get("SPACL_DATA_DIR")]
    here = Path(__file__).resolve().parents[2]  # the repository root of an editable install
    options += [Path.cwd() / c for c in DEFAULT_DATA_DIR_CANDIDATES] + [here / c for c in DEFAULT_DATA_DIR_CANDIDATES]
    for option in options:
        if option and Path(option).is_dir():
            return Path(option).resolve()
    if explicit:
        raise FileNotFoundError(f"`data_dir` {explicit!r} does not exist.")
    return None


def read_tsv(path: str | os.PathLike, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a headed TSV as dicts restricted to ``columns`` (which must all be in the header)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass the folder that holds it with --data-dir / SPACL_DATA_DIR.")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{path} lacks the columns {missing}; its header is {header}.")
        index = [header.index(c) for c in columns]
        return [{c: row[i] for c, i in zip(columns, index)} for row in reader if len(row) >= len(header)]


def read_sts(path: str | os.PathLike) -> tuple[list[str], list[str], list[float]]:
    """``sentence1``, ``sentence2`` and ``score`` columns of an STS TSV (any score range)."""
    rows = read_tsv(path, ("sentence1", "sentence2", "score"))
    return [r["sentence1"] for r in rows], [r["sentence2"] for r in rows], [float(r["score"]) for r in rows]


def read_nli_triplets(path: str | os.PathLike) -> list[tuple[str, str, str]]:
    """(premise, entailment, contradiction) triplets."""
    rows = read_tsv(path, ("premise", "entailment", "contradiction"))
    return [(r["premise"], r["entailment"], r["contradiction"]) for r in rows]
