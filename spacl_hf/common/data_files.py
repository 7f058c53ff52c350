"""Readers for the project's local data files (STS-B and NLI TSV), standard library only.

The TSV files have a header row, TAB separators and no quoting (sentences may contain ``"``).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

DEFAULT_DATA_DIR_CANDIDATES = ("../shared/data", "../../shared/data")


def find_data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The data folder: ``explicit``, else ``$SPACL_DATA_DIR``, else ``../shared/data`` near the working
    directory or this checkout; ``None`` when no default exists.

    An explicit folder (the argument or ``$SPACL_DATA_DIR``) never falls back to the default: if it does not
    exist, that is an error, so a typo cannot train on other data than the one asked for.

    Raises:
        FileNotFoundError: when ``explicit`` or ``$SPACL_DATA_DIR`` is given but is not a folder.
    """
    # an explicit "" is an error like any other missing folder (an empty $SPACL_DATA_DIR counts as unset)
    for name, option in (("`data_dir`", explicit), ("$SPACL_DATA_DIR", os.environ.get("SPACL_DATA_DIR") or None)):
        if option is not None:
            if str(option) == "" or not Path(option).is_dir():  # Path("") would be the working directory
                raise FileNotFoundError(f"{name} {str(option)!r} is not a folder (no fallback to the default data).")
            return Path(option).resolve()
    here = Path(__file__).resolve().parents[2]  # the repository root of an editable install
    for root in (Path.cwd(), here):
        for candidate in DEFAULT_DATA_DIR_CANDIDATES:
            if (root / candidate).is_dir():
                return (root / candidate).resolve()
    return None


def read_tsv(path: str | os.PathLike, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a headed TSV as dicts restricted to ``columns`` (which must all be in the header).

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: on an empty file, a header without the columns, or a row with fewer fields than the header
            (the message names the file and the line); no row is ever skipped silently.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass the folder that holds it with --data-dir / SPACL_DATA_DIR.")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty: expected a TAB-separated header with {list(columns)}.")
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{path} lacks the columns {missing}; its header is {header}.")
        index = [header.index(c) for c in columns]
        rows = []
        for row in reader:
            if len(row) < len(header):
                raise ValueError(
                    f"{path}, line {reader.line_num}: {len(row)} TAB-separated fields, the header has {len(header)}."
                )
            rows.append({c: row[i] for c, i in zip(columns, index)})
        return rows


def read_sts(path: str | os.PathLike) -> tuple[list[str], list[str], list[float]]:
    """``sentence1``, ``sentence2`` and ``score`` columns of an STS TSV (any score range).

    Raises:
        ValueError: as :func:`read_tsv`, and on a score that is not a finite number (file and line named).
    """
    rows = read_tsv(path, ("sentence1", "sentence2", "score"))
    scores = []
    for line, row in enumerate(rows, start=2):
        try:
            score = float(row["score"])
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise ValueError(f"{path}, line {line}: score {row['score']!r} is not a finite number.")
        scores.append(score)
    return [r["sentence1"] for r in rows], [r["sentence2"] for r in rows], scores


def read_nli_triplets(path: str | os.PathLike) -> list[tuple[str, str, str]]:
    """(premise, entailment, contradiction) triplets."""
    rows = read_tsv(path, ("premise", "entailment", "contradiction"))
    return [(r["premise"], r["entailment"], r["contradiction"]) for r in rows]
