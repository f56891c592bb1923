"""What every attack shares: the model it attacks (``Predictor``, defined in ``predictive.py`` and
re-exported here), the result it returns (``AttackResult``), the reporting conventions, and argument
checks."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ...data.validate import check_bounds, check_choice, check_positive
from ..predictive import (
    Predictor,
    as_predictor,
    check_batch_size,
    check_point_labels,
    check_points,
    predictive_log_probs,
)

#: Written into every result, so that numbers from different attacks are read the same way.
CONVENTIONS = {
    "decision_rule": "argmax over classes of the posterior-predictive mean over S_eval draws",
    "robust_accuracy": (
        "fraction of all N points whose decision on the attacked input is the true label; "
        "a point misclassified when clean counts as a failure"
    ),
    "success_rate": (
        "fraction of the clean-correct points whose decision on the attacked input is wrong "
        "(untargeted) or equals the target (targeted)"
    ),
    "rms_distortion": "sqrt(sum_i (x'_i - x_i)^2 / n), n = input dimensions (Szegedy et al.)",
}


@dataclasses.dataclass(frozen=True)
class AttackResult:
    """What an attack found, with the decisions and conventions needed to read it.

    Attributes:
        attack: the attack's name (``"fgsm-linf"``, ``"pgd-l2"``, ``"deepfool"``, ...).
        x: (N, ...) clean inputs.
        x_adv: (N, ...) adversarial inputs.
        y: (N,) true labels.
        target: (N,) target classes of a targeted attack, else ``None``.
        log_predictive_clean: (N, C) log p_hat(c | x) over S_eval draws.
        log_predictive_adv: (N, C) log p_hat(c | x_adv) over S_eval draws.
        loss_trace: (iterations + 1,) mean over points of the attack's objective at each iterate (the
            value it ascends, or for minimum-distortion attacks the value it minimises).
        s_eval: number of posterior draws the decision averages over.
        settings: the attack's resolved settings.
        sanity: results of sanity checks run with the attack (see ``sanity.py``), else empty.
        per_point: attack-specific per-point arrays (N,), e.g. DeepFool's ``iterations``.
    """

    attack: str
    x: np.ndarray
    x_adv: np.ndarray
    y: np.ndarray
    target: np.ndarray | None
    log_predictive_clean: np.ndarray
    log_predictive_adv: np.ndarray
    loss_trace: np.ndarray
    s_eval: int
    settings: dict[str, Any]
    sanity: dict[str, Any] = dataclasses.field(default_factory=dict)
    per_point: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    # -- decisions ----------------------------------------------------------------------------
    @property
    def clean_prediction(self) -> np.ndarray:
        """(N,) decision on the clean inputs."""
        return np.argmax(self.log_predictive_clean, axis=1)

    @property
    def adv_prediction(self) -> np.ndarray:
        """(N,) decision on the adversarial inputs."""
        return np.argmax(self.log_predictive_adv, axis=1)

    @property
    def clean_correct(self) -> np.ndarray:
        """(N,) bool: the clean decision is the true label."""
        return self.clean_prediction == self.y

    @property
    def robust_correct(self) -> np.ndarray:
        """(N,) bool: clean-correct and still correct on the attacked input."""
        return self.clean_correct & (self.adv_prediction == self.y)

    @property
    def success(self) -> np.ndarray:
        """(N,) bool per point: clean-correct and fooled (wrong, or the target when targeted)."""
        fooled = self.adv_prediction != self.y if self.target is None else self.adv_prediction == self.target
        return self.clean_correct & fooled

    # -- scalar metrics -----------------------------------------------------------------------
    @property
    def clean_accuracy(self) -> float:
        return float(np.mean(self.clean_correct))

    @property
    def robust_accuracy(self) -> float:
        """Accuracy on attacked inputs over all N points (clean mistakes count as failures)."""
        return float(np.mean(self.robust_correct))

    @property
    def success_rate(self) -> float | None:
        """Successes over clean-correct points; ``None`` when no point is clean-correct."""
        count = int(np.sum(self.clean_correct))
        return None if count == 0 else float(np.sum(self.success) / count)

    @property
    def distances(self) -> dict[str, np.ndarray]:
        """Per point (N,): ``l2``, ``linf`` and ``rms`` (= l2 / sqrt(n)) of x_adv - x, in float64."""
        delta = (self.x_adv.astype(np.float64) - self.x.astype(np.float64)).reshape(len(self.x), -1)
        l2 = np.linalg.norm(delta, axis=1)
        return {"l2": l2, "linf": np.max(np.abs(delta), axis=1), "rms": l2 / np.sqrt(delta.shape[1])}

    def summary(self) -> dict[str, Any]:
        """Scalars for tables and JSON: accuracies, success rate, mean/median distances over successful
        points (``None`` without any), ``s_eval``, settings, sanity checks and the conventions."""
        dist = self.distances
        ok = self.success
        out: dict[str, Any] = {
            "attack": self.attack,
            "num_points": int(len(self.y)),
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "success_rate": self.success_rate,
            "s_eval": self.s_eval,
        }
        for name, values in dist.items():
            out[f"mean_{name}_successful"] = float(np.mean(values[ok])) if ok.any() else None
            out[f"max_{name}"] = float(np.max(values))
        out["settings"] = dict(self.settings)
        out["sanity"] = dict(self.sanity)
        out["conventions"] = dict(CONVENTIONS)
        return out


def finish(
    predictor: Predictor,
    *,
    attack: str,
    x: np.ndarray,
    x_adv: np.ndarray,
    y: np.ndarray,
    target: np.ndarray | None,
    loss_trace: np.ndarray,
    settings: dict[str, Any],
    batch_size: int,
    log_predictive_clean: np.ndarray | None = None,
    log_predictive_adv: np.ndarray | None = None,
    per_point: dict[str, np.ndarray] | None = None,
) -> AttackResult:
    """Score clean and adversarial inputs on all S_eval draws (unless the attack already did, passing
    ``log_predictive_clean`` / ``log_predictive_adv`` (N, C)) and assemble an ``AttackResult``."""
    if not np.all(np.isfinite(x_adv)):
        raise FloatingPointError(f"{attack}: the attack produced NaN or inf inputs (see its loss_trace)")
    if log_predictive_clean is None:
        log_predictive_clean = predictive_log_probs(predictor, x, batch_size=batch_size)
    if log_predictive_adv is None:
        log_predictive_adv = predictive_log_probs(predictor, x_adv, batch_size=batch_size)
    for name, value in (("clean", log_predictive_clean), ("adversarial", log_predictive_adv)):
        if np.isnan(value).any():
            raise FloatingPointError(f"{attack}: the model returned NaN log-probabilities on the {name} inputs")
    return AttackResult(
        attack=attack,
        x=x,
        x_adv=x_adv.astype(x.dtype),
        y=y,
        target=target,
        log_predictive_clean=log_predictive_clean,
        log_predictive_adv=log_predictive_adv,
        loss_trace=np.asarray(loss_trace, np.float64),
        s_eval=predictor.num_draws,
        settings={**settings, "batch_size": batch_size},
        per_point=dict(per_point or {}),
    )


def attack_result_from_examples(
    model: Any,
    x: Any,
    x_adv: Any,
    y: Any,
    *,
    attack: str,
    target: Any = None,
    loss_trace: Any = None,
    settings: dict[str, Any] | None = None,
    batch_size: int = 1000,
) -> AttackResult:
    """An ``AttackResult`` for adversarial examples made elsewhere (another library, a cached run),
    scored by ``model`` (a ``Posterior``, a ``Predictor`` or a ``log_prob_fn``) under the same decision rule.

    Args:
        x, x_adv: (N, ...) clean and adversarial inputs of the same shape.
        y: (N,) labels; target: optional (N,) classes of a targeted attack.
        attack: the attack's name; loss_trace, settings: recorded as given (empty when None).
    """
    predictor, x, labels, targets = check_inputs(model, x, y, target)
    x_adv = check_points(x_adv, "x_adv")
    if x_adv.shape != x.shape:
        raise ValueError(f"x_adv must have the shape of x {x.shape}, got {x_adv.shape}")
    trace = np.zeros(0) if loss_trace is None else np.asarray(loss_trace, np.float64)
    return finish(predictor, attack=attack, x=x, x_adv=x_adv, y=labels, target=targets, loss_trace=trace,
                  settings=dict(settings or {}), batch_size=check_batch_size(batch_size))


# -- argument checks ------------------------------------------------------------------------------
def check_inputs(model: Any, x: Any, y: Any, target: Any = None) -> tuple[Predictor, np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate an attack's inputs. Returns ``(predictor, x float32 (N, ...), y int32 (N,), target)``."""
    x = check_points(x)
    predictor = as_predictor(model, x)
    labels = check_point_labels(y, x.shape[0], predictor.num_classes)
    targets = None
    if target is not None:
        targets = check_point_labels(target, x.shape[0], predictor.num_classes, name="target")
        if np.any(targets == labels):
            raise ValueError(f"target must differ from y at every point; equal at {int(np.sum(targets == labels))}")
    return predictor, x, labels, targets


def flat_norm(array: jax.Array) -> jax.Array:
    """L2 norm over every axis but the first: (B, ...) -> (B,)."""
    return jnp.sqrt(jnp.sum(jnp.square(array.reshape(array.shape[0], -1)), axis=1))


def per_point(values: jax.Array, like: jax.Array) -> jax.Array:
    """Reshape (B,) to broadcast against (B, ...) ``like``."""
    return values.reshape((-1,) + (1,) * (like.ndim - 1))


def point_sharding(num_points: int) -> tuple[Any, int]:
    """How a batch of ``num_points`` points is laid out over this process's devices.

    Returns ``(sharding, padded)``: with several local devices (two host CPU devices under
    ``configure_process``), a sharding that splits axis 0 (the points) evenly over all of them and the
    batch size rounded up to a multiple of the device count; with one device, ``(None, num_points)``.
    One jitted program then runs each device's share of the points on its own core: XLA's CPU backend
    runs a batched matrix product (an MLP's layers over S draws) on one core, so one device leaves the
    other idle (benchmarks/pgd_vs_torch.py measures both).
    """
    devices = jax.local_devices()
    if len(devices) == 1:
        return None, num_points
    mesh = jax.sharding.Mesh(np.array(devices), ("points",))
    padded = -(-num_points // len(devices)) * len(devices)
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("points")), padded


__all__ = [
    "AttackResult",
    "CONVENTIONS",
    "Predictor",
    "as_predictor",
    "attack_result_from_examples",
    "check_batch_size",
    "check_bounds",
    "check_choice",
    "check_inputs",
    "check_positive",
    "finish",
    "flat_norm",
    "per_point",
    "point_sharding",
]

