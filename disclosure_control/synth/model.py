"""A fitted synthesis model: released (noisy) values only, kept as a reproducible file.

Two fits of the same records differ by their noise (OpenDP draws it from the operating
system's secure generator and offers no seed, by design); everything after the measurements is
deterministic, and so is sampling a fitted model given its seed. A release is therefore
reproduced from its saved model and its seed: :meth:`SynthesisModel.to_json` writes the model
(floats exactly), :meth:`SynthesisModel.from_json` reads it back against the schema domain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np
import pandas as pd

from disclosure_control.dp.accounting import ItemisedSpend, PrivacySpend
from disclosure_control.synth.domain import MISSING, Domain, FloatArray, IntMatrix
from disclosure_control.synth.estimation import Factor, draw_compressed
from disclosure_control.synth.forbid import ForbiddenCells, allowed
from disclosure_control.synth.refine import POOL_SIZE, Pool, Refinement, pool_weights


@dataclass
class SynthesisModel:
    """A fitted synthesizer: released (noisy) information only, safe to keep and to publish.

    Keep it with :meth:`to_json` and read it back with :meth:`from_json`: the loaded model
    samples exactly as the original for the same seed, which is how a release is reproduced.

    :param domain: the schema domain of the synthetic columns.
    :param order: columns in sampling order.
    :param factors: each column's conditional table, in sampling order.
    :param expand: per column, ``(kept codes, rare codes, rare weights)`` turning a compressed
        code back into a schema code.
    :param spend: the privacy loss of the run that fitted the model.
    :param tree: the selected tree edges, as column name pairs.
    :param refinement: the measured pairs a weighted pool of the network's records is fitted
        to (:mod:`~disclosure_control.synth.refine`), if the run refined the network.
    :param forbidden: value combinations no sampled record may hold, if the fit was asked to
        forbid those whose noisy count did not clear its threshold
        (:mod:`~disclosure_control.synth.forbid`).
    """

    domain: Domain
    order: list[int]
    factors: list[Factor]
    expand: list[tuple[IntMatrix, IntMatrix, FloatArray]]
    spend: ItemisedSpend
    tree: list[tuple[str, str]]
    refinement: Refinement | None = None
    forbidden: list[ForbiddenCells] | None = None

    def parents(self) -> dict[str, tuple[str, ...]]:
        """Return each column's parents in the model, by name."""
        names = self.domain.columns
        return {names[f.child]: tuple(names[p] for p in f.parents) for f in self.factors}

    def values(self) -> dict[str, tuple[str, ...]]:
        """Return, per column, the values the model can draw ("" for not recorded).

        Only values the fit's released counts show are drawn (kept values, and rare values
        that cleared the bar of :func:`~disclosure_control.synth.compression.rare_weights`,
        unless the fit forbade drawing the rare-value bucket).
        """
        never = {f.columns[0]: set(f.cells.tolist()) for f in self.forbidden or ()
                 if len(f.columns) == 1}  # fmt: skip
        drawable: dict[str, tuple[str, ...]] = {}
        for j, (column, (kept, rare, weights)) in enumerate(
            zip(self.domain.columns, self.expand, strict=True)
        ):
            labels = (*self.domain.codes[j], MISSING)
            out = never.get(j, set())
            rare_drawn = [] if len(kept) in out else rare[weights > 0].tolist()
            kept_drawn = [c for i, c in enumerate(kept.tolist()) if i not in out]
            codes = sorted({*kept_drawn, *rare_drawn})
            drawable[column] = tuple(labels[c] for c in codes)
        return drawable

    def to_json(self) -> str:
        """Return the model as JSON text, to keep a release reproducible.

        The text holds a format name and version, the domain (columns and their codes), the
        sampling order, every conditional table, the expansion of compressed codes, the
        privacy spend and the tree, with a SHA-256 digest of all of it. Every float is written
        as its exact hexadecimal form (``float.hex``), so a loaded model samples exactly as
        the original. Read it back with :meth:`from_json`.
        """
        payload = {
            "domain": {
                "columns": list(self.domain.columns),
                "codes": [list(c) for c in self.domain.codes],
            },
            "order": [int(j) for j in self.order],
            "factors": [
                {
                    "child": int(f.child),
                    "parents": [int(q) for q in f.parents],
                    "shape": [int(n) for n in f.table.shape],
                    "table": _hex_floats(f.table),
                }
                for f in self.factors
            ],
            "expand": [
                {
                    "kept": [int(v) for v in kept],
                    "rare": [int(v) for v in rare],
                    "weights": _hex_floats(weights),
                }
                for kept, rare, weights in self.expand
            ],
            "spend": {
                "rho": float(self.spend.rho).hex(),
                "delta": float(self.spend.display_delta).hex(),
                "epsilon": float(self.spend.epsilon).hex(),
                "measurements": [
                    [label, float(part.rho).hex()] for label, part in self.spend.measurements
                ],
            },
            "tree": [[a, b] for a, b in self.tree],
            "refinement": None if self.refinement is None else _refinement_json(self.refinement),
            "forbidden": None
            if self.forbidden is None
            else [
                {"columns": [int(c) for c in f.columns], "cells": [int(v) for v in f.cells]}
                for f in self.forbidden
            ],
        }
        return json.dumps(
            {
                "format": MODEL_FORMAT,
                "version": MODEL_VERSION,
                "sha256": _digest(payload),
                "model": payload,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str, domain: Domain) -> SynthesisModel:
        """Load a model written by :meth:`to_json`, checking it against the expected domain.

        :param text: the model's JSON text.
        :param domain: the schema domain the model must have been fitted over.
        :raises ValueError: if the text is not a model file of this version, is truncated or
            altered (its digest does not match), or was fitted over another domain.
        """
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"synthesis model: not valid JSON (truncated?): {error}") from None
        if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
            raise ValueError(f"synthesis model: not a {MODEL_FORMAT!r} file")
        if document.get("version") not in READABLE_VERSIONS:
            raise ValueError(
                f"synthesis model: format version {document.get('version')!r} is not "
                f"supported (this code reads version {MODEL_VERSION})"
            )
        payload = document.get("model")
        if not isinstance(payload, dict) or document.get("sha256") != _digest(payload):
            raise ValueError("synthesis model: content does not match its SHA-256 digest")
        try:
            return _model_from_payload(payload, domain)
        except (KeyError, TypeError, IndexError, ValueError) as error:
            if isinstance(error, ValueError) and str(error).startswith("synthesis model"):
                raise
            raise ValueError(f"synthesis model: malformed content ({error!r})") from None

    def sample(self, n_records: int, seed: int) -> pd.DataFrame:
        """Draw synthetic case records from the model; the same seed gives the same table.

        The order of the rows carries nothing about the real records' order (issue 10: a
        release must not leave in an order derived from its input), so unlike a k-anonymous
        release it needs no CSPRNG shuffle, which would break the exact redraw from model and
        seed: every row is an independent draw from the network (or from its weighted pool,
        itself drawn from the network with a fixed seed), whose tables and weights are noisy
        aggregates (counts) of the records and so the same whatever order the records came in.
        Row ``i`` is the ``i``-th draw of a generator seeded by the release's own seed; nothing
        of any real record's position enters it. The table has a fresh ``RangeIndex``.

        A model fitted with ``forbid_below`` never draws a record holding a forbidden
        combination: pool records holding one get weight zero before the pool is fitted to the
        refinement's targets, and a network without refinement redraws such records.

        :param n_records: how many records to draw.
        :param seed: seed of the draw.
        """
        if n_records < 0:
            raise ValueError("the number of synthetic records cannot be negative")
        rng = np.random.default_rng(seed)
        sizes = [len(kept) + (1 if rare.size else 0) for kept, rare, _ in self.expand]
        if self.refinement is None:
            compressed = self._draw_network(sizes, n_records, rng)
        else:
            pool = Pool.draw(self.factors, sizes, self.refinement.pool_size)
            keep = None if self.forbidden is None else allowed(pool.records, self.forbidden, sizes)
            weights = pool_weights(pool, sizes, self.refinement, keep)
            if not weights.sum() > 0:
                # On a small, noisy table the refinement's reweighting can vanish (every weight
                # zero or not a number): draw from the network's own pool instead, which is
                # post-processing of the same released counts.
                weights = np.ones(len(pool.records)) if keep is None else keep.astype(np.float64)
            if not weights.sum() > 0:
                raise ValueError(_ALL_FORBIDDEN)
            drawn = rng.choice(len(pool.records), size=n_records, p=weights / weights.sum())
            compressed = pool.records[drawn]
        codes = np.empty_like(compressed)
        for j, (kept, rare, weights) in enumerate(self.expand):
            column = compressed[:, j]
            in_bucket = column >= len(kept)
            codes[:, j] = kept[np.minimum(column, len(kept) - 1)]
            if rare.size and in_bucket.any():
                codes[in_bucket, j] = rng.choice(rare, size=int(in_bucket.sum()), p=weights)
        return self.domain.decode(codes)

    def _draw_network(
        self, sizes: list[int], n_records: int, rng: np.random.Generator
    ) -> IntMatrix:
        """Draw from the network, redrawing records that hold a forbidden combination."""
        compressed = draw_compressed(self.factors, sizes, n_records, rng)
        if self.forbidden is None:
            return compressed
        kept = compressed[allowed(compressed, self.forbidden, sizes)]
        drawn = n_records
        for _ in range(REDRAW_ROUNDS):
            if len(kept) >= n_records:
                break
            # Draw what the share kept so far should fill, within ten tables' worth.
            share = max(len(kept), 1) / drawn
            batch_size = min(int((n_records - len(kept)) / share) + 1, 10 * n_records)
            batch = draw_compressed(self.factors, sizes, batch_size, rng)
            kept = np.concatenate([kept, batch[allowed(batch, self.forbidden, sizes)]])
            drawn += batch_size
        if len(kept) < n_records:
            raise ValueError(_ALL_FORBIDDEN)
        return kept[:n_records]


#: The name and version written into every saved model.
MODEL_FORMAT = "ctdhub-synthesis-model"
MODEL_VERSION = 3
#: Version 1 models (before the refinement) and version 2 (before forbidden combinations)
#: are read as they were written.
READABLE_VERSIONS = (1, 2, 3)
#: Rounds of redrawing before a network without refinement gives up filling the table.
REDRAW_ROUNDS = 20
_ALL_FORBIDDEN = (
    "synthesis model: the forbidden combinations leave (almost) no record to draw; "
    "fit again with a lower forbid_below"
)


def _hex_floats(values: FloatArray) -> list[str]:
    """Write floats exactly, as hexadecimal strings (row-major)."""
    return [float(v).hex() for v in np.asarray(values, dtype=np.float64).ravel()]


def _read_floats(values: Any, what: str) -> FloatArray:
    """Read floats written by :func:`_hex_floats`."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"synthesis model: {what} must be a list of hexadecimal floats")
    return np.array([float.fromhex(v) for v in values], dtype=np.float64)


def _read_ints(values: Any, what: str) -> IntMatrix:
    """Read a list of integers."""
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    ):
        raise ValueError(f"synthesis model: {what} must be a list of integers")
    return np.array(values, dtype=np.int64).reshape(len(values))


def _refinement_json(refinement: Refinement) -> dict[str, Any]:
    """Write a refinement's released values (floats exactly)."""
    return {
        "pool_size": int(refinement.pool_size),
        "n_hat": float(refinement.n_hat).hex(),
        "priors": [_hex_floats(prior) for prior in refinement.priors],
        "marginals": [
            {"columns": [int(c) for c in columns], "counts": _hex_floats(counts)}
            for columns, counts in refinement.marginals
        ],
    }


def _refinement_from_json(entry: Any, sizes: Sequence[int]) -> Refinement | None:
    """Read a refinement written by :func:`_refinement_json`, checking its shapes."""
    if entry is None:
        return None
    priors = [_read_floats(p, f"refinement prior {j}") for j, p in enumerate(entry["priors"])]
    if [p.size for p in priors] != list(sizes):
        raise ValueError("synthesis model: refinement priors do not match the columns")
    marginals: list[tuple[tuple[int, ...], FloatArray]] = []
    for k, item in enumerate(entry["marginals"]):
        columns = tuple(int(c) for c in _read_ints(item["columns"], f"refinement {k} columns"))
        if not columns or not all(0 <= c < len(sizes) for c in columns):
            raise ValueError(f"synthesis model: refinement {k} names a column outside the model")
        counts = _read_floats(item["counts"], f"refinement {k} counts")
        if counts.size != prod(sizes[c] for c in columns):
            raise ValueError(f"synthesis model: refinement {k} has the wrong shape")
        marginals.append((columns, counts))
    pool_size = int(entry["pool_size"])
    if not 1 <= pool_size <= 10 * POOL_SIZE:
        raise ValueError("synthesis model: refinement pool size out of range")
    return Refinement(float.fromhex(entry["n_hat"]), priors, marginals, pool_size)


def _digest(payload: Any) -> str:
    """Return the SHA-256 digest of a model's canonical JSON form."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _model_from_payload(payload: dict[str, Any], domain: Domain) -> SynthesisModel:
    """Rebuild a model from its checked JSON payload, refusing any inconsistency."""
    saved = payload["domain"]
    columns, codes = list(saved["columns"]), [list(c) for c in saved["codes"]]
    if columns != list(domain.columns):
        raise ValueError(
            f"synthesis model: fitted over columns {columns}, not the expected "
            f"{list(domain.columns)}"
        )
    for column, mine, theirs in zip(columns, domain.codes, codes, strict=True):
        if list(mine) != theirs:
            raise ValueError(
                f"synthesis model: column {column!r} was fitted over other codes than the "
                "expected domain's"
            )
    d = len(columns)
    order = [int(j) for j in _read_ints(payload["order"], "order")]
    if sorted(order) != list(range(d)):
        raise ValueError("synthesis model: order is not a permutation of the columns")
    expand: list[tuple[IntMatrix, IntMatrix, FloatArray]] = []
    for j, entry in enumerate(payload["expand"]):
        kept = _read_ints(entry["kept"], f"expand[{j}].kept")
        rare = _read_ints(entry["rare"], f"expand[{j}].rare")
        weights = _read_floats(entry["weights"], f"expand[{j}].weights")
        listed = [*kept.tolist(), *rare.tolist()]
        if len(set(listed)) != len(listed) or not set(listed) <= set(
            range(domain.cardinalities[j])
        ):
            # Codes in neither list are values the fit found absent: never drawn.
            raise ValueError(f"synthesis model: expand[{j}] lists codes outside column {j}'s")
        if kept.size == 0 or weights.size != rare.size:
            raise ValueError(f"synthesis model: expand[{j}] is inconsistent")
        if rare.size and ((weights < 0).any() or not np.isclose(weights.sum(), 1.0)):
            raise ValueError(f"synthesis model: expand[{j}] weights are not a distribution")
        expand.append((kept, rare, weights))
    if len(expand) != d:
        raise ValueError("synthesis model: expand must have one entry per column")
    sizes = [len(kept) + (1 if rare.size else 0) for kept, rare, _ in expand]
    factors: list[Factor] = []
    placed: set[int] = set()
    for position, entry in enumerate(payload["factors"]):
        child = int(entry["child"])
        parents = tuple(int(q) for q in _read_ints(entry["parents"], "factor parents"))
        if position >= d or child != order[position] or not set(parents) <= placed:
            raise ValueError(
                f"synthesis model: factor {position} does not follow the sampling order"
            )
        shape = (prod(sizes[q] for q in parents), sizes[child])
        if [int(n) for n in entry["shape"]] != list(shape):
            raise ValueError(f"synthesis model: factor {position} has the wrong shape")
        table = _read_floats(entry["table"], f"factor {position} table").reshape(shape)
        if (table < 0).any() or not np.allclose(table.sum(axis=1), 1.0):
            raise ValueError(f"synthesis model: factor {position} rows are not distributions")
        factors.append(Factor(child, parents, table))
        placed.add(child)
    if len(factors) != d:
        raise ValueError("synthesis model: there must be one factor per column")
    saved_spend = payload["spend"]
    # The saved epsilon is for readers of the file; the account states it from rho and delta.
    spend = ItemisedSpend(
        PrivacySpend(float.fromhex(saved_spend["rho"])),
        float.fromhex(saved_spend["delta"]),
        tuple(
            (str(label), PrivacySpend(float.fromhex(r))) for label, r in saved_spend["measurements"]
        ),
    )
    tree = [(str(a), str(b)) for a, b in payload["tree"]]
    if not all(a in columns and b in columns for a, b in tree):
        raise ValueError("synthesis model: a tree edge names a column outside the domain")
    refinement = _refinement_from_json(payload.get("refinement"), sizes)
    forbidden = _forbidden_from_json(payload.get("forbidden"), sizes)
    return SynthesisModel(domain, order, factors, expand, spend, tree, refinement, forbidden)


def _forbidden_from_json(entry: Any, sizes: Sequence[int]) -> list[ForbiddenCells] | None:
    """Read forbidden combinations, checking their columns and cells."""
    if entry is None:
        return None
    forbidden: list[ForbiddenCells] = []
    for k, item in enumerate(entry):
        columns = tuple(int(c) for c in _read_ints(item["columns"], f"forbidden {k} columns"))
        if not columns or list(columns) != sorted(set(columns)) or columns[-1] >= len(sizes):
            raise ValueError(f"synthesis model: forbidden {k} names columns outside the model")
        found = _read_ints(item["cells"], f"forbidden {k} cells")
        if found.size and (found.min() < 0 or found.max() >= prod(sizes[c] for c in columns)):
            raise ValueError(f"synthesis model: forbidden {k} names a cell outside its columns")
        forbidden.append(ForbiddenCells(columns, found))
    return forbidden
