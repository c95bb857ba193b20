"""MMEB-V2 retrieval metrics, per query, exactly as VLM2Vec's `src/utils/eval_utils/metrics.py`
(github.com/TIGER-AI-Lab/VLM2Vec, the MMEB-V2 harness) computes them.

Deviation from the reference, on purpose: graded NDCG pairs each relevant id with *its own* grade
(max over duplicate pairs, grade > 0), built before any deduplication. The reference zips
`list(set(labels))` with the original grade list, so grades land on the wrong documents and the value
depends on PYTHONHASHSEED (ViDoRe_esg_reports_human_labeled_v2 and ViDoSeek-doc are affected).

Ties, by default: `rank` rounds scores to 1e-6 and sorts stably, so float noise never orders candidates
and 1 and N processes rank alike. The reference (VLM2Vec eval.py, UME-R1 eval_twomode.py) sorts the raw
scores with numpy's default, unstable argsort; `rank(..., ties="reference")` does exactly that, for
score-for-score reproduction of published numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

KS = (1, 5, 10)
NAMES = ("hit", "ndcg_linear", "ndcg_exponential", "precision", "recall", "f1", "map", "mrr")
METRIC_KEYS = tuple(f"{n}@{k}" for n in NAMES for k in KS)


def grade_map(labels: Sequence[str], rel_scores: Sequence[int] | None) -> dict[str, float]:
    """Relevant id -> grade. Binary (grade 1) without scores; with scores, max over duplicates, > 0 only."""
    if rel_scores is None:
        return {lab: 1.0 for lab in labels}
    if len(rel_scores) != len(labels):
        raise ValueError(f"rel_scores has {len(rel_scores)} grades for {len(labels)} labels")
    grades: dict[str, float] = {}
    for lab, g in zip(labels, rel_scores, strict=True):
        if g > 0:
            grades[lab] = max(grades.get(lab, 0.0), float(g))
    return grades


def _dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def query_metrics(prediction: Sequence[str], labels: Sequence[str],
                  rel_scores: Sequence[int] | None = None) -> dict[str, float]:
    """All 24 metrics for one ranked list (best first) against its relevant ids."""
    grades = grade_map(labels, rel_scores)
    relevant = set(grades)
    graded = rel_scores is not None
    out: dict[str, float] = {}
    for k in KS:
        top = list(prediction[:k])
        hits = len(set(top) & relevant)
        p = hits / k
        r = hits / len(relevant) if relevant else 1.0
        out[f"hit@{k}"] = 1.0 if hits > 0 else 0.0
        out[f"precision@{k}"] = p
        out[f"recall@{k}"] = r
        out[f"f1@{k}"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
        ap, seen = 0.0, 0
        for i, d in enumerate(top, 1):
            if d in relevant:
                seen += 1
                ap += seen / i
        out[f"map@{k}"] = ap / min(len(relevant), k) if relevant and seen else 0.0
        first = next((i for i, d in enumerate(top, 1) if d in relevant), None)
        out[f"mrr@{k}"] = 1.0 / first if first else 0.0
        for name, gain in (("ndcg_linear", lambda g: g), ("ndcg_exponential", lambda g: 2.0**g - 1.0)):
            if graded:
                rel = [gain(grades.get(d, 0.0)) for d in top]
                ideal = [gain(g) for g in sorted(grades.values(), reverse=True)[:k]]
            else:
                rel = [gain(1.0) if d in relevant else 0.0 for d in top]
                ideal = [gain(1.0)] * min(len(relevant), k)
            idcg = _dcg(ideal)
            out[f"{name}@{k}"] = _dcg(rel) / idcg if idcg > 0 else 0.0
    return out


def chance(metric: str, candidates: Sequence[str], labels: Sequence[str],
           rel_scores: Sequence[int] | None = None) -> float:
    """Expected value of `metric` when `candidates` are ranked uniformly at random: the floor a score must
    clear before it says anything. Exact, not sampled: every position holds each candidate equally often, so
    E[DCG@k] = mean gain x the first min(k, n) discounts, and hit@k misses only when all k picks are
    irrelevant."""
    name, _, k_text = metric.partition("@")
    k, n = int(k_text), len(candidates)
    grades = grade_map(labels, rel_scores)
    if name == "hit":
        r = sum(1 for c in candidates if c in grades)
        return 1.0 - math.comb(n - r, min(k, n)) / math.comb(n, min(k, n)) if n else 0.0
    if name in ("ndcg_linear", "ndcg_exponential"):
        gain = (lambda g: g) if name == "ndcg_linear" else (lambda g: 2.0**g - 1.0)
        ideal = _dcg([gain(g) for g in sorted(grades.values(), reverse=True)[:k]])
        if not n or ideal <= 0:
            return 0.0
        mean_gain = sum(gain(grades.get(c, 0.0)) for c in candidates) / n
        return mean_gain * _dcg([1.0] * min(k, n)) / ideal
    raise ValueError(f"chance: no closed form for metric {metric!r} (hit@k and ndcg_*@k only)")


SCORE_DECIMALS = 6  # float32 embeddings agree to ~1e-7 across batchings; finer digits are noise


def rank(scores: np.ndarray, names: Sequence[str], ties: Literal["ume", "reference"] = "ume") -> list[str]:
    """Names sorted by descending score; ties keep list order (stable), so rankings are deterministic.

    Scores are rounded to 1e-6 first: two candidates whose similarities differ only by float noise
    (identical content encoded in different batches, or on different ranks) tie instead of being ordered
    by that noise, so 1 and N processes rank identically.

    `ties="reference"` is the reference's `np.argsort(-scores)` instead: raw scores in the caller's dtype
    (the reference scores float32 embeddings), numpy's default kind. Its tie order is whatever that numpy
    build produces, and near-ties are ordered by their noise; use it only to reproduce published scores.
    Given the same score values, ranking a global task row by row equals the reference's
    `np.argsort(-S, axis=1)` on the whole matrix (numpy sorts each row on its own).
    """
    if ties == "reference":
        order = np.argsort(-np.asarray(scores))
    elif ties == "ume":
        order = np.argsort(-np.round(np.asarray(scores, dtype=np.float64), SCORE_DECIMALS), kind="stable")
    else:
        raise ValueError(f"ties must be 'ume' or 'reference', not {ties!r}")
    return [names[i] for i in order]


def mean_metrics(per_query: Sequence[dict[str, float]], num_data: int | None = None) -> dict[str, float]:
    """The 26-key score dict: each metric averaged over queries, plus num_pred and num_data."""
    out = {key: float(np.mean([m[key] for m in per_query])) if per_query else 0.0 for key in METRIC_KEYS}
    out["num_pred"] = len(per_query)
    out["num_data"] = len(per_query) if num_data is None else num_data
    return out
