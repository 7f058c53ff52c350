"""The sweep helper shared by the quality studies: grids of settings, runs through the :class:`RunStore` with
progress, and mean ± std over seeds for choosing on validation.

A *configuration* is a settings dict without its ``seed``; a *run* is a configuration with a seed.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from run_store import RunStore


def grid(base: dict[str, Any], **axes: Iterable[Any]) -> list[dict[str, Any]]:
    """Every combination of ``axes`` applied to ``base`` (later axes vary fastest).

    Example:
        >>> grid({"lr": 1e-4}, temperature=[0.05, 0.1])
        [{'lr': 0.0001, 'temperature': 0.05}, {'lr': 0.0001, 'temperature': 0.1}]
    """
    names = list(axes)
    return [{**base, **dict(zip(names, values))} for values in itertools.product(*(list(axes[n]) for n in names))]


def run_all(
    store: RunStore,
    configurations: list[dict[str, Any]],
    seeds: Iterable[int],
    compute: Callable[[dict[str, Any]], dict[str, Any]],
    describe: Callable[[dict[str, Any]], str] = str,
    seed_major: bool = False,
) -> list[dict[str, Any]]:
    """Each configuration with each seed, stored runs skipped; one progress line per run on stderr.

    ``seed_major`` runs every configuration's seed 0, then every seed 1, ...: a study stopped early then holds
    paired seeds of every configuration instead of all seeds of the first few.
    """
    seeds = list(seeds)
    runs = (
        [{**c, "seed": s} for s in seeds for c in configurations]
        if seed_major
        else [{**c, "seed": s} for c in configurations for s in seeds]
    )
    records, started, computed = [], time.perf_counter(), 0
    for index, settings in enumerate(runs, 1):
        record = store.load(settings)
        stored = record is not None
        if not stored:
            record = store.run(settings, compute)  # computes and saves; nothing was stored
        computed += not stored
        elapsed = time.perf_counter() - started
        left = (len(runs) - index) * elapsed / computed if computed else 0.0
        print(
            f"[{index}/{len(runs)}] "
            + ("stored " if stored else f"{record['seconds']:5.0f} s")
            + f"  {describe(record)}"
            + (f"  (about {left / 60:.0f} min left)" if computed and index < len(runs) else ""),
            file=sys.stderr,
            flush=True,
        )
        records.append(record)
    return records


def value(record: dict[str, Any], metric: str) -> float:
    """``record["result"]`` read along a dotted path, e.g. ``"validation.centroid_cosine.auroc"``."""
    node: Any = record["result"]
    for part in metric.split("."):
        node = node[part]
    return float(node)


def by_configuration(records: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Records grouped by configuration (settings without the seed): mean, std (sample; 0 for one seed), seeds."""
    groups: dict[str, dict[str, Any]] = {}
    for record in records:
        configuration = {k: v for k, v in record["settings"].items() if k != "seed"}
        key = repr(sorted(configuration.items()))
        group = groups.setdefault(key, {"configuration": configuration, "values": [], "seeds": []})
        group["values"].append(value(record, metric))
        group["seeds"].append(record["settings"]["seed"])
    rows = []
    for group in groups.values():
        values = group.pop("values")
        rows.append({**group, "seeds": sorted(group["seeds"]), "mean": statistics.mean(values),
                     "std": statistics.stdev(values) if len(values) > 1 else 0.0})  # fmt: skip
    return rows


def best(rows: list[dict[str, Any]], top: int = 1, higher_is_better: bool = True) -> list[dict[str, Any]]:
    """The ``top`` rows of :func:`by_configuration` by mean."""
    return sorted(rows, key=lambda r: r["mean"], reverse=higher_is_better)[:top]


def runs_of(records: list[dict[str, Any]], configuration: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of one configuration (every seed)."""
    return [r for r in records if {k: v for k, v in r["settings"].items() if k != "seed"} == configuration]


def stored_best(store: RunStore, configurations: list[dict[str, Any]], top: int, metric: str) -> list[dict[str, Any]]:
    """The ``top`` configurations by their stored seed-0 ``metric``; exits (saying which phase to run) when any of
    them has no stored seed-0 run yet, so no choice is made on a partial sweep."""
    records = [r for c in configurations if (r := store.load({**c, "seed": 0})) is not None]
    if len(records) < len(configurations):
        raise SystemExit(f"{len(configurations) - len(records)} sweep runs are missing: run the `sweep` phase first.")
    return [row["configuration"] for row in best(by_configuration(records, metric), top)]


def chosen_on_seeds(
    store: RunStore, candidates: list[dict[str, Any]], top: int, seeds: Iterable[int], metric: str
) -> dict[str, Any]:
    """The choice of a two-stage sweep: the candidate with the best mean ``metric`` over ``seeds`` among those
    stored with every seed, that is the ``top`` best single-seed candidates (which must have them) and any other
    run with every seed, such as the defaults of the seed spread. Exits, naming the `sweep` phase, when the ``top``
    lack seeds."""
    seeds = list(seeds)
    leaders = stored_best(store, candidates, top, metric)
    records = [r for c in candidates for s in seeds if (r := store.load({**c, "seed": s})) is not None]
    if any(len(runs_of(records, c)) < len(seeds) for c in leaders):
        raise SystemExit(f"The {len(seeds)}-seed validation runs of the best settings are missing: run `sweep`.")
    complete = [row for row in by_configuration(records, metric) if len(row["seeds"]) == len(seeds)]
    return best(complete, 1)[0]["configuration"]
