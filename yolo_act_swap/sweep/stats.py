"""The statistics of a sweep over seeds: per activation the mean, standard deviation and t interval of each metric,
and against the baseline a paired t-test over the seeds both ran, Holm-corrected over the activations compared.

The numbers come from ``scipy.stats`` (``t.interval``, ``sem``, ``ttest_rel`` and its ``confidence_interval``);
only Holm's step-down adjustment, which scipy does not provide, is written here (it matches statsmodels'
``multipletests(method="holm")``). Cases where a test would mislead (one seed, zero variance, every mAP 0, no
finite value) give no verdict and say why.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from ..errors import SweepError
from ..tables import is_finite

CONFIDENCE = 0.95
ALPHA = 0.05  # the family-wise error rate of the verdicts (Holm over the activations compared)
METRICS = ("mAP50-95", "mAP50")
VERDICT_METRIC = "mAP50-95"
TIE = 1e-9  # values this close are equal (mAP lies in [0, 1]; float noise must not become a variance)


def _scipy_stats():
    """``scipy.stats``, or a one-line error naming the extra that installs it."""
    try:
        from scipy import stats
    except ImportError:
        raise SweepError("the sweep's statistics need scipy: pip install 'yolo-act-swap[sweep]'") from None
    return stats


def require_scipy() -> None:
    """Fail before any training when the statistics could not be computed at the end."""
    _scipy_stats()


@dataclass(frozen=True)
class Spread:
    """One metric of one activation over its seeds: ``n`` finite values, their mean, sample std (ddof 1) and the
    two-sided t interval of the mean (None with fewer than two values; the mean itself when the std is 0)."""

    n: int
    mean: float | None = None
    std: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass(frozen=True)
class Paired:
    """An activation minus the baseline, seed by seed: ``n`` pairs, the mean difference, its t interval and the
    paired t-test's two-sided p-value; ``problem`` says why there is no test (then p and the interval are None)."""

    n: int
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p: float | None = None
    problem: str | None = None


def spread(values: list[float], confidence: float = CONFIDENCE) -> Spread:
    """Mean, std and the t confidence interval of the mean of the finite ``values``."""
    vals = [float(v) for v in values if is_finite(v)]
    n = len(vals)
    if n == 0:
        return Spread(0)
    mean = math.fsum(vals) / n
    if n == 1:
        return Spread(1, mean)
    if max(vals) - min(vals) <= TIE:
        return Spread(n, mean, 0.0, mean, mean)
    stats = _scipy_stats()
    sem, std = float(stats.sem(vals)), float(stats.tstd(vals))
    lo, hi = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return Spread(n, mean, std, float(lo), float(hi))


def paired(values: dict[int, float], base: dict[int, float], confidence: float = CONFIDENCE) -> Paired:
    """``values`` minus ``base`` over the seeds where both are finite (seed -> metric), with a paired t-test."""
    seeds = sorted(s for s in values if s in base and is_finite(values[s]) and is_finite(base[s]))
    n = len(seeds)
    if n == 0:
        return Paired(0, problem="no seed finished for both")
    x = [float(values[s]) for s in seeds]
    y = [float(base[s]) for s in seeds]
    diffs = [a - b for a, b in zip(x, y)]
    diff = math.fsum(diffs) / n
    if n == 1:
        return Paired(1, diff, problem="one seed: no verdict possible")
    if max(diffs) - min(diffs) <= TIE:  # the t statistic is 0/0 or ±inf: a test would say nothing true
        what = "identical results on every seed" if abs(diff) <= TIE else "the same difference on every seed"
        return Paired(n, diff, problem=f"{what} (zero variance): no test")
    stats = _scipy_stats()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # precision warnings for nearly equal inputs
        res = stats.ttest_rel(x, y)
        ci = res.confidence_interval(confidence)
    return Paired(n, diff, float(ci.low), float(ci.high), float(res.pvalue))


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (each ``min(1, max over the smaller ones of
    (m - rank) * p)``), which control the family-wise error rate over the ``m`` tests."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


@dataclass
class Comparison:
    """One activation's statistics: a :class:`Spread` per metric, the paired difference of ``VERDICT_METRIC`` to
    the baseline, its Holm-adjusted p-value and the verdict."""

    label: str
    spreads: dict[str, Spread]
    delta: Paired | None = None
    p_holm: float | None = None
    verdict: str = ""


def _warnings(values: dict[str, dict[int, dict[str, float]]], baseline: str | None, seeds: int | None) -> list[str]:
    """What makes the sweep degenerate, said plainly (each a sentence without a final period)."""
    out = []
    finite = [v for per_seed in values.values() for m in per_seed.values() for v in (m.get(VERDICT_METRIC),)
              if is_finite(v)]
    if finite and all(abs(v) <= TIE for v in finite):
        out.append(f"every {VERDICT_METRIC} is 0: the runs are too short (or the data too small) to learn anything; "
                   f"no verdict is possible, train longer")
    if seeds is None:
        seeds = max((len(per_seed) for per_seed in values.values()), default=0)
    if values and seeds <= 1:
        out.append("one seed per activation: no verdict is possible; pass --seeds 3 (or more) for a paired test")
    if baseline is None and len(values) > 1:
        out.append("no baseline in this sweep (add silu to --acts, or pass --baseline NAME): no verdicts")
    for label, per_seed in values.items():
        bad = sorted(s for s, m in per_seed.items() if not all(is_finite(m.get(k)) for k in METRICS))
        if bad:
            out.append(f"{label}: no finite mAP for seed(s) {', '.join(map(str, bad))}; left out of the statistics")
        vals = [m.get(VERDICT_METRIC) for m in per_seed.values() if is_finite(m.get(VERDICT_METRIC))]
        if len(vals) > 1 and max(vals) - min(vals) <= TIE and vals[0] != 0:
            out.append(f"{label}: the same {VERDICT_METRIC} on every seed (zero variance); check that the seed "
                       f"reaches the training")
    return out


def compare(values: dict[str, dict[int, dict[str, float]]], baseline: str | None, alpha: float = ALPHA,
            seeds: int | None = None) -> tuple[dict[str, Comparison], list[str]]:
    """The statistics of a sweep: per activation the spread of each metric, and the verdict against ``baseline``.

    Args:
        values (dict): activation label -> seed -> metrics (``mAP50-95``, ``mAP50``) of its finished runs.
        baseline (str, optional): the reference activation's label (None: spreads only).
        alpha (float): the family-wise error rate; a Holm-adjusted p below it is a verdict.
        seeds (int, optional): the seeds planned per activation (None: the most any activation finished); one seed
            is warned about, fewer finished than planned is not (the sweep is still running).

    Returns:
        (tuple): label -> :class:`Comparison`, and the sweep's warnings (degenerate cases, in words).
    """
    notes = _warnings(values, baseline, seeds)
    all_zero = any(n.startswith(f"every {VERDICT_METRIC} is 0") for n in notes)
    out = {label: Comparison(label, {k: spread([m.get(k) for m in per_seed.values()]) for k in METRICS})
           for label, per_seed in values.items()}
    if baseline not in values:
        return out, notes
    base = {s: m.get(VERDICT_METRIC) for s, m in values[baseline].items()}
    out[baseline].verdict = "baseline"
    tested = []
    for label, per_seed in values.items():
        if label == baseline:
            continue
        c = out[label]
        c.delta = paired({s: m.get(VERDICT_METRIC) for s, m in per_seed.items()}, base)
        if all_zero:
            c.verdict = "no verdict: every mAP is 0"
        elif c.delta.problem:
            c.verdict = f"no verdict: {c.delta.problem.split(':')[0]}"
        else:
            tested.append(c)
    for c, p in zip(tested, holm([c.delta.p for c in tested])):
        c.p_holm = p
        if p < alpha:
            c.verdict = "better" if c.delta.diff > 0 else "worse"
        else:
            c.verdict = f"no significant difference at n={c.delta.n}"
    return out, notes
