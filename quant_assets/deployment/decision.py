"""Champion/challenger validation on arrays: metrics, a paired block bootstrap, the decision.

Everything here works on labels ``y`` (values in ``CLASS_ORDER`` = −1 DOWN, 0 NEUTRAL, +1 UP)
and class probabilities ``probs[n, 3]`` whose columns follow ``CLASS_ORDER`` (the bundles'
``class_order``). The predicted class is the argmax. No Dagster, no TensorFlow.

Metrics (``compute_metrics``)
    ``macro_f1_updown`` — the mean of the F1 scores of UP and DOWN (Neutral is not a trade, so it
    is left out of the average but still counts as a wrong call when UP/DOWN was right);
    ``precision_up`` / ``precision_down`` (how often an UP / DOWN call is right; 0 when never
    called); ``log_loss`` (mean −ln p[true class], p clipped at 1e-15); plus recall, accuracy, n.

Paired block bootstrap (``paired_block_bootstrap``)
    The validation samples are time-ordered and autocorrelated (a 30-bar label horizon makes
    neighbouring labels share most of their future path), so rows are resampled in blocks:
    ``k = ceil(N / L)`` block starts are drawn uniformly, each contributes ``L`` consecutive
    units (the last one only the remainder, so every replicate has N units), wrapping around
    the end ("circular", Politis & Romano 1992) or not ("moving", Künsch 1989). Both models
    are scored on the *same* resampled rows (paired), so their common difficulty cancels out.
    With ``time_keys`` (e.g. bar timestamps of a many-ticker panel) the unit is one timestamp
    with all its rows, so cross-sectional correlation is kept inside blocks too. Sums are
    taken from prefix sums of per-row counts, so 2,000 replicates over 10⁵ rows take well
    under a second. ``confidence`` is the share of replicates in which the challenger's
    macro-F1 is strictly higher.

Decision (``decide`` with ``DecisionRule``)
    Challengers are compared with the champion (or, on the first run, with the majority
    baseline: always the most frequent validation class, probabilities = validation class
    frequencies, a hindsight baseline that is a little stronger than any honest constant).
    A challenger *qualifies* when (1) its macro-F1 exceeds the reference's by at least
    ``margin`` (default 0.02 absolute) and (2) the bootstrap confidence is at least
    ``confidence`` (default 0.95; Bonferroni-tightened to 1 − 0.05 / k for k challengers,
    so picking the best of several does not inflate the chance of a fluke), and, against the
    baseline only, (3) its log-loss is lower than the baseline's (a model that merely guesses
    UP/DOWN gets a positive F1 on a Neutral-heavy set but no better log-loss), and (4) the net
    value rule, when the models' holdout backtests are given (``values``: ``NetValue`` at the
    default cost, see ``evaluation.backtest``): against the champion, the challenger's net P&L
    is not below the champion's; as a first champion, its net P&L is > 0 with at least
    ``value_confidence`` (0.95) from the same block bootstrap (per-sample net returns, units
    of one timestamp, blocks of ``block_length``). F1 can come from predicting *whether* the
    price moves (time of day); only the value rule asks whether the model knows *which way*.
    The best qualifying challenger (largest macro-F1 gain, then lower log-loss) is promoted;
    otherwise the champion stays. Fewer than ``min_samples`` rows never promote. The reason
    lists every rule with its figures and whether it passed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from quant_assets.labels import CLASS_ORDER, DOWN, UP

BASELINE = "majority_baseline"
PRIMARY_METRIC = "macro_f1_updown"
_EPS = 1e-15

# Columns of the per-row statistics matrix of one model (summed over resampled rows).
_TP_UP, _PRED_UP, _TRUE_UP, _TP_DOWN, _PRED_DOWN, _TRUE_DOWN, _NLL, _CORRECT, _COUNT = range(9)
_N_STATS = 9


@dataclass(frozen=True)
class ClassificationMetrics:
    """Scores of one model on one validation set."""

    macro_f1_updown: float
    f1_up: float
    f1_down: float
    precision_up: float
    precision_down: float
    recall_up: float
    recall_down: float
    log_loss: float
    accuracy: float
    n: int

    def as_dict(self) -> dict[str, float]:
        """Plain floats (for JSON, MLflow and the registry)."""
        return {k: float(v) for k, v in asdict(self).items()}


def check_inputs(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels and probabilities; return them as int8 / float64 arrays."""
    y = np.asarray(y)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if p.shape != (len(y), len(CLASS_ORDER)):
        raise ValueError(f"probs must have shape ({len(y)}, 3), got {p.shape}")
    if not np.isin(y, CLASS_ORDER).all():
        raise ValueError(f"labels must be in {CLASS_ORDER}, got {sorted(set(np.unique(y)))}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("probs must be finite and non-negative")
    return y.astype(np.int8), p


def predict(probs: np.ndarray) -> np.ndarray:
    """The predicted class (argmax over ``CLASS_ORDER``; ties go to the earlier class)."""
    return np.asarray(CLASS_ORDER, dtype=np.int8)[np.argmax(probs, axis=1)]


def row_stats(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-row counts ``[n, 9]`` whose column sums give every metric (see ``_metrics_from``)."""
    y, p = check_inputs(y, probs)
    pred = predict(p)
    true_idx = np.searchsorted(np.asarray(CLASS_ORDER), y)
    p_true = np.clip(p[np.arange(len(y)), true_idx], _EPS, 1.0)
    out = np.empty((len(y), _N_STATS), dtype=np.float64)
    out[:, _TP_UP] = (pred == UP) & (y == UP)
    out[:, _PRED_UP] = pred == UP
    out[:, _TRUE_UP] = y == UP
    out[:, _TP_DOWN] = (pred == DOWN) & (y == DOWN)
    out[:, _PRED_DOWN] = pred == DOWN
    out[:, _TRUE_DOWN] = y == DOWN
    out[:, _NLL] = -np.log(p_true)
    out[:, _CORRECT] = pred == y
    out[:, _COUNT] = 1.0
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _f1(sums: np.ndarray, tp: int, pred: int, true: int) -> np.ndarray:
    return _ratio(2.0 * sums[..., tp], sums[..., pred] + sums[..., true])


def _macro_f1(sums: np.ndarray) -> np.ndarray:
    up = _f1(sums, _TP_UP, _PRED_UP, _TRUE_UP)
    down = _f1(sums, _TP_DOWN, _PRED_DOWN, _TRUE_DOWN)
    return 0.5 * (up + down)


def _metrics_from(sums: np.ndarray) -> ClassificationMetrics:
    n = float(sums[_COUNT])
    return ClassificationMetrics(
        macro_f1_updown=float(_macro_f1(sums)),
        f1_up=float(_f1(sums, _TP_UP, _PRED_UP, _TRUE_UP)),
        f1_down=float(_f1(sums, _TP_DOWN, _PRED_DOWN, _TRUE_DOWN)),
        precision_up=float(_ratio(sums[_TP_UP], sums[_PRED_UP])),
        precision_down=float(_ratio(sums[_TP_DOWN], sums[_PRED_DOWN])),
        recall_up=float(_ratio(sums[_TP_UP], sums[_TRUE_UP])),
        recall_down=float(_ratio(sums[_TP_DOWN], sums[_TRUE_DOWN])),
        log_loss=float(sums[_NLL] / n) if n else math.nan,
        accuracy=float(sums[_CORRECT] / n) if n else math.nan,
        n=int(n),
    )


def compute_metrics(y: np.ndarray, probs: np.ndarray) -> ClassificationMetrics:
    """macro-F1 over UP and DOWN, precision UP / DOWN, log-loss, … of one model."""
    return _metrics_from(row_stats(y, probs).sum(axis=0))


def majority_baseline(y: np.ndarray) -> np.ndarray:
    """Probabilities of the constant "majority class" model: the class frequencies of ``y``
    (argmax = the most frequent class), clipped away from 0 so its log-loss is finite."""
    y = np.asarray(y)
    freq = np.array([(y == c).mean() if len(y) else 1 / 3 for c in CLASS_ORDER])
    freq = np.clip(freq, 1e-6, None)
    freq /= freq.sum()
    return np.tile(freq, (len(y), 1))


# ---------------------------------------------------------------------------------------------
# Paired block bootstrap
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BootstrapResult:
    """Bootstrap distribution of challenger − reference differences."""

    delta_macro_f1: float  # point estimate on the full sample
    delta_log_loss: float
    confidence: float  # P*(Δmacro-F1 > 0)
    confidence_log_loss: float  # P*(challenger log-loss < reference log-loss)
    ci_low: float  # percentile interval of Δmacro-F1 (2.5 %, 97.5 %)
    ci_high: float
    n_units: int
    block_length: int
    n_boot: int
    seed: int
    scheme: str


def _unit_sums(stats: np.ndarray, time_keys: np.ndarray | None) -> np.ndarray:
    if time_keys is None:
        return stats
    keys = np.asarray(time_keys)
    if len(keys) != len(stats):
        raise ValueError("time_keys must have one entry per row")
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    return np.add.reduceat(stats[order], starts, axis=0)


def block_bootstrap_sums(
    units: np.ndarray,
    *,
    block_length: int,
    n_boot: int,
    seed: int,
    scheme: Literal["circular", "moving"] = "circular",
) -> np.ndarray:
    """Column sums ``[n_boot, m]`` of ``units[N, m]`` over block-bootstrap replicates of N units."""
    n, m = units.shape
    if n == 0:
        raise ValueError("no units to resample")
    length = max(1, min(int(block_length), n))
    k = math.ceil(n / length)
    last = n - (k - 1) * length  # the last block is cut so every replicate has exactly n units
    if scheme == "circular":
        ext = np.concatenate([units, units[: length - 1]], axis=0)
        n_starts = n
    elif scheme == "moving":
        ext = units
        n_starts = n - length + 1
    else:
        raise ValueError(f"scheme must be 'circular' or 'moving', got {scheme!r}")
    csum = np.concatenate([np.zeros((1, m)), np.cumsum(ext, axis=0)], axis=0)
    s = np.arange(n_starts)
    full = csum[s + length] - csum[s]
    tail = csum[s + last] - csum[s]
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_starts, size=(n_boot, k))
    out = np.empty((n_boot, m))
    chunk = max(1, 2_000_000 // max(1, k * m))
    for i in range(0, n_boot, chunk):
        st = starts[i : i + chunk]
        out[i : i + chunk] = full[st[:, :-1]].sum(axis=1) + tail[st[:, -1]]
    return out


def paired_block_bootstrap(
    y: np.ndarray,
    probs_reference: np.ndarray,
    probs_challenger: np.ndarray,
    *,
    block_length: int = 30,
    n_boot: int = 2000,
    seed: int = 0,
    scheme: Literal["circular", "moving"] = "circular",
    time_keys: np.ndarray | None = None,
) -> BootstrapResult:
    """How sure are we that the challenger's macro-F1 beats the reference's?

    Rows must be in time order (or ``time_keys`` given). Deterministic for a given ``seed``.
    """
    ref = row_stats(y, probs_reference)
    cha = row_stats(y, probs_challenger)
    units = _unit_sums(np.concatenate([ref, cha], axis=1), time_keys)
    boot = block_bootstrap_sums(
        units, block_length=block_length, n_boot=n_boot, seed=seed, scheme=scheme
    )
    b_ref, b_cha = boot[:, :_N_STATS], boot[:, _N_STATS:]
    d_f1 = _macro_f1(b_cha) - _macro_f1(b_ref)
    d_ll = (b_cha[:, _NLL] - b_ref[:, _NLL]) / b_cha[:, _COUNT]
    m_ref, m_cha = _metrics_from(ref.sum(axis=0)), _metrics_from(cha.sum(axis=0))
    low, high = np.percentile(d_f1, [2.5, 97.5])
    return BootstrapResult(
        delta_macro_f1=m_cha.macro_f1_updown - m_ref.macro_f1_updown,
        delta_log_loss=m_cha.log_loss - m_ref.log_loss,
        confidence=float(np.mean(d_f1 > 0)),
        confidence_log_loss=float(np.mean(d_ll < 0)),
        ci_low=float(low),
        ci_high=float(high),
        n_units=len(units),
        block_length=max(1, min(block_length, len(units))),
        n_boot=n_boot,
        seed=seed,
        scheme=scheme,
    )


# ---------------------------------------------------------------------------------------------
# Decision
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecisionRule:
    """When a challenger replaces the champion (defaults: see the module docstring)."""

    margin: float = 0.02
    confidence: float = 0.95
    block_length: int = 30
    n_boot: int = 2000
    seed: int = 0
    scheme: Literal["circular", "moving"] = "circular"
    min_samples: int = 300
    bonferroni: bool = True
    baseline_needs_better_log_loss: bool = True
    value_confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError("margin must be ≥ 0")
        if not 0.5 <= self.confidence < 1 or not 0.5 <= self.value_confidence < 1:
            raise ValueError("confidence and value_confidence must be in [0.5, 1)")
        if self.block_length < 1 or self.n_boot < 100 or self.min_samples < 1:
            raise ValueError("block_length ≥ 1, n_boot ≥ 100 and min_samples ≥ 1 are required")

    def required_confidence(self, n_challengers: int) -> float:
        """The per-challenger confidence (Bonferroni over the challengers when enabled)."""
        if not self.bonferroni or n_challengers <= 1:
            return self.confidence
        return 1.0 - (1.0 - self.confidence) / n_challengers


@dataclass(frozen=True)
class NetValue:
    """What a model's holdout trades earned at the default cost (``net_value``)."""

    net_pnl: float  # portfolio net return over the holdout (sum of its daily returns)
    confidence_positive: float  # block-bootstrap P*(net P&L > 0)
    trades: int
    cost_bps: float

    def describe(self) -> str:
        return (
            f"net P&L {self.net_pnl:+.4%} at {self.cost_bps:g} bps over {self.trades} trades "
            f"(P(>0) {self.confidence_positive:.1%})"
        )


def net_value(
    sample_net: np.ndarray,
    time_keys: np.ndarray,
    trades: int,
    cost_bps: float,
    rule: DecisionRule | None = None,
) -> NetValue:
    """``NetValue`` of per-sample portfolio net returns (a trade's net return / the number of
    tickers at its signal sample, 0 elsewhere), resampled in blocks of whole timestamps."""
    rule = rule or DecisionRule()
    values = np.asarray(sample_net, dtype="float64")[:, None]
    if len(values) == 0:
        return NetValue(0.0, 0.0, 0, float(cost_bps))
    units = _unit_sums(values, time_keys)
    boot = block_bootstrap_sums(
        units,
        block_length=rule.block_length,
        n_boot=rule.n_boot,
        seed=rule.seed,
        scheme=rule.scheme,
    )
    return NetValue(
        net_pnl=float(values.sum()),
        confidence_positive=float(np.mean(boot[:, 0] > 0)),
        trades=int(trades),
        cost_bps=float(cost_bps),
    )


@dataclass(frozen=True)
class Comparison:
    """One challenger against the reference (the champion or the majority baseline)."""

    challenger: str
    reference: str
    bootstrap: BootstrapResult
    margin: float
    required_confidence: float
    needs_better_log_loss: bool
    value: NetValue | None = None  # None: no backtest, the value rule is not evaluated
    reference_value: NetValue | None = None
    value_confidence: float = 0.95

    @property
    def beats_margin(self) -> bool:
        """Point gain in macro-F1 ≥ margin (tiny float slack for exact ties with the margin)."""
        return self.bootstrap.delta_macro_f1 >= self.margin - 1e-12

    @property
    def confident(self) -> bool:
        """Bootstrap confidence that it is better ≥ the required confidence."""
        return self.bootstrap.confidence >= self.required_confidence

    @property
    def log_loss_ok(self) -> bool:
        """Lower log-loss than the reference, when that is required (baseline only)."""
        return not self.needs_better_log_loss or self.bootstrap.delta_log_loss < 0

    @property
    def first_champion(self) -> bool:
        """Compared with the baseline (no champion yet)."""
        return self.reference == BASELINE

    @property
    def value_ok(self) -> bool:
        """The net value rule (module docstring); True when no backtest was given."""
        if self.value is None:
            return True
        if self.first_champion:
            return (
                self.value.net_pnl > 0 and self.value.confidence_positive >= self.value_confidence
            )
        reference = self.reference_value.net_pnl if self.reference_value is not None else 0.0
        return self.value.net_pnl >= reference

    @property
    def qualifies(self) -> bool:
        """All conditions hold: this challenger may replace the reference."""
        return self.beats_margin and self.confident and self.log_loss_ok and self.value_ok

    def rules(self) -> list[tuple[str, bool | None, str]]:
        """(rule, passed — None when not evaluated, figures) for every rule that applies."""
        b = self.bootstrap
        out = [
            (
                "F1 margin",
                self.beats_margin,
                f"Δmacro-F1 {b.delta_macro_f1:+.4f} vs margin {self.margin:.3f}",
            ),
            (
                "F1 confidence",
                self.confident,
                f"{b.confidence:.1%} vs {self.required_confidence:.1%}, "
                f"95% CI [{b.ci_low:+.4f}, {b.ci_high:+.4f}]",
            ),
        ]
        if self.needs_better_log_loss:
            out.append(
                ("log-loss below the baseline's", self.log_loss_ok, f"Δ {b.delta_log_loss:+.4f}")
            )
        value_ok = None if self.value is None else self.value_ok
        out.append(("net value", value_ok, self._value_figures()))
        return out

    def _value_figures(self) -> str:
        if self.value is None:
            return "no holdout backtest"
        if self.first_champion:
            return f"{self.value.describe()}; needs > 0 with ≥ {self.value_confidence:.0%}"
        ref = self.reference_value
        theirs = "unknown" if ref is None else f"{ref.net_pnl:+.4%}"
        return f"{self.value.describe()} vs {self.reference}'s {theirs}"

    def explain(self) -> str:
        """One line: every rule with its figures and whether it passed."""
        verdict = {True: "pass", False: "FAIL", None: "not evaluated"}
        rules = "; ".join(f"{name} {verdict[ok]} ({figures})" for name, ok, figures in self.rules())
        return f"{self.challenger} vs {self.reference}: {rules}"


@dataclass(frozen=True)
class Decision:
    """The outcome of one validation.

    ``outcome``: ``promote`` (``winner`` becomes champion), ``keep`` (the champion stays) or
    ``no_champion`` (first run and no challenger beat the baseline).
    """

    outcome: Literal["promote", "keep", "no_champion"]
    winner: str | None
    champion: str | None
    reason: str
    metrics: dict[str, ClassificationMetrics]
    comparisons: list[Comparison]
    rule: DecisionRule
    n_samples: int
    class_counts: dict[int, int] = field(default_factory=dict)
    values: dict[str, NetValue] = field(default_factory=dict)

    def comparison_table(self) -> str:
        """A markdown table: one row per model (champion, challengers, baseline), the verdict
        next to the role (a narrow window cuts the right-hand columns off, not the verdict)."""
        by_name = {c.challenger: c for c in self.comparisons}
        lines = [
            "| model | role | verdict | macro-F1 UP/DOWN | prec. UP | prec. DOWN | log-loss | "
            "net P&L | Δ macro-F1 | 95% CI | conf. |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, m in self.metrics.items():
            if name == self.champion:
                role = "champion"
            elif name == BASELINE:
                role = "baseline"
            else:
                role = "challenger"
            c = by_name.get(name)
            if c is None:
                delta = ci = conf = "—"
                verdict = "reference" if role != "challenger" else "not compared"
            else:
                b = c.bootstrap
                delta = f"{b.delta_macro_f1:+.4f}"
                ci = f"[{b.ci_low:+.4f}, {b.ci_high:+.4f}]"
                conf = f"{b.confidence:.1%}"
                verdict = (
                    "**promoted**"
                    if name == self.winner and self.outcome == "promote"
                    else ("qualifies" if c.qualifies else "rejected")
                )
            value = self.values.get(name)
            net = "—" if value is None else f"{value.net_pnl:+.3%}"
            lines.append(
                f"| {name} | {role} | {verdict} | {m.macro_f1_updown:.4f} | {m.precision_up:.4f} | "
                f"{m.precision_down:.4f} | {m.log_loss:.4f} | {net} | {delta} | {ci} | {conf} |"
            )
        return "\n".join(lines)


def decide(
    y: np.ndarray,
    challengers: Mapping[str, np.ndarray],
    champion: tuple[str, np.ndarray] | None = None,
    rule: DecisionRule | None = None,
    *,
    time_keys: np.ndarray | None = None,
    values: Mapping[str, NetValue] | None = None,
) -> Decision:
    """Decide whether one of ``challengers`` (name → probs) replaces ``champion`` (name, probs).

    All probabilities are on the same rows ``y`` (time-ordered unless ``time_keys``);
    ``values``: each model's holdout ``NetValue`` (the value rule; omitted, it is not
    evaluated). Deterministic given ``rule.seed``.
    """
    values = values or {}
    rule = rule or DecisionRule()
    y = np.asarray(y)
    champ_name = champion[0] if champion is not None else None
    challengers = {k: v for k, v in challengers.items() if k != champ_name}
    ref_name, ref_probs = champion if champion is not None else (BASELINE, majority_baseline(y))
    metrics = {ref_name: compute_metrics(y, ref_probs)}
    metrics.update({name: compute_metrics(y, p) for name, p in challengers.items()})
    if champion is not None:
        metrics[BASELINE] = compute_metrics(y, majority_baseline(y))
    counts = {c: int((y == c).sum()) for c in CLASS_ORDER}
    stay = "keep" if champion is not None else "no_champion"
    stay_what = f"{champ_name} stays champion" if champion is not None else "no champion yet"

    def result(
        outcome: Literal["promote", "keep", "no_champion"],
        winner: str | None,
        reason: str,
        comparisons: list[Comparison],
    ) -> Decision:
        return Decision(
            outcome,
            winner,
            champ_name,
            reason,
            metrics,
            comparisons,
            rule,
            len(y),
            counts,
            dict(values),
        )

    if not challengers:
        return result(stay, champ_name, f"no challenger to compare; {stay_what}", [])
    if len(y) < rule.min_samples:
        return result(
            stay,
            champ_name,
            f"only {len(y)} validation samples (< min_samples {rule.min_samples}); {stay_what}",
            [],
        )
    required = rule.required_confidence(len(challengers))
    comparisons = [
        Comparison(
            challenger=name,
            reference=ref_name,
            bootstrap=paired_block_bootstrap(
                y,
                ref_probs,
                probs,
                block_length=rule.block_length,
                n_boot=rule.n_boot,
                seed=rule.seed,
                scheme=rule.scheme,
                time_keys=time_keys,
            ),
            margin=rule.margin,
            required_confidence=required,
            needs_better_log_loss=champion is None and rule.baseline_needs_better_log_loss,
            value=values.get(name),
            reference_value=values.get(ref_name),
            value_confidence=rule.value_confidence,
        )
        for name, probs in sorted(challengers.items())
    ]
    ranked = sorted(
        comparisons,
        key=lambda c: (-c.bootstrap.delta_macro_f1, c.bootstrap.delta_log_loss, c.challenger),
    )
    winners = [c for c in ranked if c.qualifies]
    if winners:
        best = winners[0]
        what = "replaces " + champ_name if champion is not None else "first champion"
        return result(
            "promote", best.challenger, f"{best.challenger} {what}: {best.explain()}", comparisons
        )
    return result(
        stay, champ_name, f"{stay_what}; best challenger {ranked[0].explain()}", comparisons
    )


def decision_summary(decision: Decision) -> dict[str, object]:
    """JSON-ready summary (for asset metadata and logs)."""
    return {
        "outcome": decision.outcome,
        "winner": decision.winner,
        "champion_before": decision.champion,
        "reason": decision.reason,
        "n_samples": decision.n_samples,
        "class_counts": {str(k): v for k, v in decision.class_counts.items()},
        "rule": asdict(decision.rule),
        "metrics": {k: v.as_dict() for k, v in decision.metrics.items()},
        "net_values": {k: asdict(v) for k, v in decision.values.items()},
        "comparisons": [
            {
                "challenger": c.challenger,
                "reference": c.reference,
                "qualifies": c.qualifies,
                "rules": [{"rule": r, "passed": ok, "figures": f} for r, ok, f in c.rules()],
                **asdict(c.bootstrap),
            }
            for c in decision.comparisons
        ],
    }
