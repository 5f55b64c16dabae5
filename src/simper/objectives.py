"""Preference objectives as pure functions on per-sequence log-probabilities.

Every objective takes a :class:`SequenceLogps` for the policy (and one for the reference model when
its registry entry says ``needs_reference``) and returns an :class:`ObjectiveOutput` of
per-example tensors. The training loop does the reduction (mean over examples) and the
accumulation scaling; an objective never sees a model, an optimizer or trainer state.

Shapes: every tensor here is ``(B,)``, one value per preference pair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SequenceLogps:
    """Summed response log-probabilities and response-token counts of a batch of pairs.

    Attributes:
        chosen_sum: ``(B,)`` sum of log π(token) over the chosen response tokens (EOS included).
        rejected_sum: ``(B,)`` the same for the rejected response.
        chosen_count: ``(B,)`` number of chosen response tokens (always ≥ 1).
        rejected_count: ``(B,)`` number of rejected response tokens (always ≥ 1).
    """

    chosen_sum: torch.Tensor
    rejected_sum: torch.Tensor
    chosen_count: torch.Tensor
    rejected_count: torch.Tensor

    @property
    def chosen_mean(self) -> torch.Tensor:
        """``(B,)`` mean log-prob per chosen response token: (1/|y_w|) log π(y_w|x)."""
        return self.chosen_sum / self.chosen_count

    @property
    def rejected_mean(self) -> torch.Tensor:
        """``(B,)`` mean log-prob per rejected response token: (1/|y_l|) log π(y_l|x)."""
        return self.rejected_sum / self.rejected_count


@dataclass(frozen=True)
class ObjectiveOutput:
    """Per-example results of an objective.

    Attributes:
        losses: ``(B,)`` per-example losses; the loop takes their mean.
        chosen_rewards: ``(B,)`` the implicit reward the objective ranks the chosen response by.
        rejected_rewards: ``(B,)`` the same for the rejected response. Rewards are detached and
            only logged (``rewards/accuracies``, ``rewards/margins``).
    """

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


ObjectiveFn = Callable[..., ObjectiveOutput]
MAX_EXPONENT = 80.0  # exp(80) ≈ 5.5e34 < fp32 max ≈ 3.4e38


@dataclass(frozen=True)
class Objective:
    """A registry entry: the function, whether it needs a reference model, and its defaults."""

    name: str
    fn: ObjectiveFn
    needs_reference: bool
    defaults: Mapping[str, float] = field(default_factory=dict)
    summary: str = ""

    def __call__(
        self, policy: SequenceLogps, reference: SequenceLogps | None = None, **params: float
    ) -> ObjectiveOutput:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"objective {self.name!r} has no parameter {sorted(unknown)[0]!r}; "
                f"it takes: {', '.join(self.defaults) or 'none'}"
            )
        if self.needs_reference and reference is None:
            raise ValueError(f"objective {self.name!r} needs reference log-probs")
        kwargs = {**self.defaults, **params}
        if self.needs_reference:
            return self.fn(policy, reference, **kwargs)
        return self.fn(policy, **kwargs)


def _output(losses: torch.Tensor, chosen: torch.Tensor, rejected: torch.Tensor) -> ObjectiveOutput:
    return ObjectiveOutput(losses, chosen.detach(), rejected.detach())


def _preference_logsigmoid(logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """``-(1-ε)·log σ(z) - ε·log σ(-z)``: the conservative (label-smoothed) sigmoid loss."""
    return -F.logsigmoid(logits) * (1 - label_smoothing) - F.logsigmoid(-logits) * label_smoothing


# ----------------------------------------------------------------------------------------------
# SimPER and its two ablations (Xiao et al., ICLR 2025)
# ----------------------------------------------------------------------------------------------


def simper_loss(policy: SequenceLogps) -> ObjectiveOutput:
    """SimPER: ``-exp(mean log π(y_w|x)) + exp(mean log π(y_l|x))`` (Xiao et al. 2025, eq. 6).

    The exponentiated mean log-prob is the inverse perplexity, so the loss lies in [-1, 1]. Its
    gradient with respect to the chosen mean log-prob is ``-exp(mean_c)`` and with respect to the
    rejected one ``+exp(mean_r)``: each response is pushed in proportion to its own inverse
    perplexity, which bounds and balances the update (the paper's §3.3).

    Worked example: mean_c = log 0.5, mean_r = log 0.25 gives -0.5 + 0.25 = -0.25.

    Rewards are the inverse perplexities ``exp(mean)``.
    """
    chosen = policy.chosen_mean.exp()
    rejected = policy.rejected_mean.exp()
    return _output(-chosen + rejected, chosen, rejected)


def simper_sum_loss(policy: SequenceLogps) -> ObjectiveOutput:
    """SimPER without length normalization (the paper's ablation, Table 5): summed log-probs.

    ``-exp(log π(y_w|x)) + exp(log π(y_l|x))``. For any response longer than a few tokens the
    sequence probability underflows towards 0 and so does the gradient, which is why the paper
    finds length normalization matters. Worked example: sum_c = log 0.5, sum_r = log 0.25 gives
    -0.25. Rewards are the summed log-probs (their exponentials would underflow).
    """
    losses = -policy.chosen_sum.exp() + policy.rejected_sum.exp()
    return _output(losses, policy.chosen_sum, policy.rejected_sum)


def simper_ref_loss(policy: SequenceLogps, reference: SequenceLogps) -> ObjectiveOutput:
    """SimPER with a reference model (the paper's ablation, Table 5).

    Uses the mean per-token log-ratio ``(1/|y|) Σ (log π − log π_ref)`` in place of the mean
    log-prob: ``-exp(mean_ratio_c) + exp(mean_ratio_r)``. At the start of training (π = π_ref)
    the loss is exactly 0. Unlike SimPER it is unbounded (a log-ratio can be positive), so the
    mean log-ratio is clamped at ``MAX_EXPONENT`` to stay finite in fp32. Rewards are ``exp(mean_ratio)``.
    """
    chosen = ((policy.chosen_sum - reference.chosen_sum) / policy.chosen_count).clamp(max=MAX_EXPONENT).exp()
    rejected = ((policy.rejected_sum - reference.rejected_sum) / policy.rejected_count).clamp(max=MAX_EXPONENT).exp()
    return _output(-chosen + rejected, chosen, rejected)


# ----------------------------------------------------------------------------------------------
# Baselines the paper compares against
# ----------------------------------------------------------------------------------------------


def dpo_loss(
    policy: SequenceLogps, reference: SequenceLogps, *, beta: float, label_smoothing: float
) -> ObjectiveOutput:
    """DPO, sigmoid form (Rafailov et al. 2023, eq. 7), on summed log-probs.

    ``z = β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))]``,
    ``loss = −(1−ε) log σ(z) − ε log σ(−z)`` (ε: cDPO label smoothing). Defaults β = 0.1,
    ε = 0 as in TRL's ``DPOConfig``. Worked example: all ratios 0 gives z = 0 and loss log 2.
    Rewards are ``β (log π − log π_ref)``.
    """
    chosen = beta * (policy.chosen_sum - reference.chosen_sum)
    rejected = beta * (policy.rejected_sum - reference.rejected_sum)
    return _output(_preference_logsigmoid(chosen - rejected, label_smoothing), chosen, rejected)


def ipo_loss(policy: SequenceLogps, reference: SequenceLogps, *, beta: float) -> ObjectiveOutput:
    """IPO (Azar et al. 2023, eq. 17): ``(h − 1/(2β))²`` with h the difference of log-ratios.

    As in TRL's DPOTrainer (``loss_type="ipo"``) the log-probs are averaged over response tokens
    before the log-ratios are taken. Default β = 0.1 (TRL). Worked example: h = 0, β = 0.1
    gives (0 − 5)² = 25. Rewards are ``β`` times the mean log-ratios.
    """
    chosen_ratio = (policy.chosen_sum - reference.chosen_sum) / policy.chosen_count
    rejected_ratio = (policy.rejected_sum - reference.rejected_sum) / policy.rejected_count
    losses = (chosen_ratio - rejected_ratio - 1 / (2 * beta)) ** 2
    return _output(losses, beta * chosen_ratio, beta * rejected_ratio)


def slic_loss(policy: SequenceLogps, *, beta: float, nll_weight: float) -> ObjectiveOutput:
    """SLiC-HF (Zhao et al. 2023, eq. 1): rank-calibration hinge plus an optional NLL regularizer.

    ``loss = max(0, 1 − β (log π(y_w) − log π(y_l))) + λ · NLL(y_w)``, reference-free on summed
    log-probs, written as TRL writes its ``hinge`` loss (margin δ = 1/β). NLL is the chosen
    response's mean negative log-likelihood per token. Defaults β = 0.1 (TRL), λ = 0.
    Worked example: sums −10 and −20, β = 0.1 gives max(0, 1 − 1) = 0. Rewards are ``β log π``.
    """
    chosen = beta * policy.chosen_sum
    rejected = beta * policy.rejected_sum
    losses = torch.relu(1 - (chosen - rejected)) - nll_weight * policy.chosen_mean
    return _output(losses, chosen, rejected)


def kto_loss(
    policy: SequenceLogps,
    reference: SequenceLogps,
    *,
    beta: float,
    desirable_weight: float,
    undesirable_weight: float,
) -> ObjectiveOutput:
    """KTO on paired data (Ethayarajh et al. 2024, eq. 8), chosen = desirable, rejected = undesirable.

    ``r = log π(y|x) − log π_ref(y|x)`` (summed log-probs). The reference point ``z`` is a
    batch-level estimate of KL(π‖π_ref): the mean log-ratio over the batch's responses, clamped at 0
    and not back-propagated through, as the KTO paper prescribes. Then
    ``loss = λ_D (1 − σ(β(r_w − z))) + λ_U (1 − σ(β(z − r_l)))``. Defaults β = 0.1 and
    λ_D = λ_U = 1 (TRL's ``KTOConfig``). Worked example: all ratios 0 gives z = 0 and
    loss = 0.5 + 0.5 = 1. The estimate uses the pairs of one micro-batch (per process), so unlike
    the other objectives KTO's loss depends on how the batch is split. Rewards are ``β r``.
    """
    chosen_ratio = policy.chosen_sum - reference.chosen_sum
    rejected_ratio = policy.rejected_sum - reference.rejected_sum
    kl = torch.cat([chosen_ratio, rejected_ratio]).mean().clamp(min=0).detach()
    losses = desirable_weight * (1 - torch.sigmoid(beta * (chosen_ratio - kl))) + undesirable_weight * (
        1 - torch.sigmoid(beta * (kl - rejected_ratio))
    )
    return _output(losses, beta * chosen_ratio, beta * rejected_ratio)


def cpo_loss(policy: SequenceLogps, *, beta: float, nll_weight: float, label_smoothing: float) -> ObjectiveOutput:
    """CPO (Xu et al. 2024, eq. 3): reference-free sigmoid preference loss plus NLL on chosen.

    ``loss = −log σ(β (log π(y_w) − log π(y_l))) + α · NLL(y_w)`` on summed log-probs; NLL is the
    chosen response's mean negative log-likelihood per token (TRL averages it over all chosen
    tokens of the batch instead: the two agree when responses have equal length). Defaults β = 0.1,
    α = 1 (TRL's ``CPOConfig``). Worked example: equal sums, mean_c = −2 gives log 2 + 2.
    Rewards are ``β log π``.
    """
    chosen = beta * policy.chosen_sum
    rejected = beta * policy.rejected_sum
    losses = _preference_logsigmoid(chosen - rejected, label_smoothing) - nll_weight * policy.chosen_mean
    return _output(losses, chosen, rejected)


def _log_odds(mean_logp: torch.Tensor) -> torch.Tensor:
    """``log(p / (1 − p))`` for ``p = exp(mean_logp)``, stable as p → 0 and p → 1."""
    mean_logp = mean_logp.clamp(max=-1e-6)
    return mean_logp - torch.log(-torch.expm1(mean_logp))


def orpo_loss(policy: SequenceLogps, *, beta: float) -> ObjectiveOutput:
    """ORPO (Hong et al. 2024, eqs. 6–7): NLL on chosen plus λ times the odds-ratio loss.

    With ``p = exp(mean log π(y|x))`` and ``odds = p/(1−p)``:
    ``loss = NLL(y_w) − λ log σ(log odds(y_w) − log odds(y_l))``. Default λ = 0.1 (TRL's
    ``ORPOConfig.beta``). Worked example: mean_c = mean_r = log 0.5 gives 0.693 + 0.1·0.693.
    Rewards are ``λ · mean log π`` as in TRL.
    """
    log_odds = _log_odds(policy.chosen_mean) - _log_odds(policy.rejected_mean)
    losses = -policy.chosen_mean - beta * F.logsigmoid(log_odds)
    return _output(losses, beta * policy.chosen_mean, beta * policy.rejected_mean)


def simpo_loss(policy: SequenceLogps, *, beta: float, gamma: float, label_smoothing: float) -> ObjectiveOutput:
    """SimPO (Meng et al. 2024, eq. 6): ``−log σ(β·mean_c − β·mean_r − γ)``, reference-free.

    Defaults β = 2.0, γ = 1.0 (γ/β = 0.5), the values the SimPO paper recommends as a starting
    point. With γ = 0 it is reference-free DPO on mean log-probs. Worked example: equal means and
    γ = 1 gives −log σ(−1) = 1.3133. Rewards are ``β · mean log π``.
    """
    chosen = beta * policy.chosen_mean
    rejected = beta * policy.rejected_mean
    return _output(_preference_logsigmoid(chosen - rejected - gamma, label_smoothing), chosen, rejected)


REGISTRY: dict[str, Objective] = {
    entry.name: entry
    for entry in [
        Objective("simper", simper_loss, False, {}, "SimPER: inverse perplexity, no β, no reference"),
        Objective("simper-sum", simper_sum_loss, False, {}, "SimPER ablation: no length normalization"),
        Objective("simper-ref", simper_ref_loss, True, {}, "SimPER ablation: with a reference model"),
        Objective("dpo", dpo_loss, True, {"beta": 0.1, "label_smoothing": 0.0}, "DPO (sigmoid)"),
        Objective("ipo", ipo_loss, True, {"beta": 0.1}, "IPO"),
        Objective("slic", slic_loss, False, {"beta": 0.1, "nll_weight": 0.0}, "SLiC-HF (hinge)"),
        Objective(
            "kto",
            kto_loss,
            True,
            {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0},
            "KTO on paired data",
        ),
        Objective("cpo", cpo_loss, False, {"beta": 0.1, "nll_weight": 1.0, "label_smoothing": 0.0}, "CPO"),
        Objective("orpo", orpo_loss, False, {"beta": 0.1}, "ORPO"),
        Objective("simpo", simpo_loss, False, {"beta": 2.0, "gamma": 1.0, "label_smoothing": 0.0}, "SimPO"),
    ]
}


def get_objective(name: str) -> Objective:
    """Look up an objective by name; the error lists the valid names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose one of: {', '.join(REGISTRY)}") from None


def mean_logp_gradients(output_losses: torch.Tensor, policy: SequenceLogps) -> tuple[torch.Tensor, torch.Tensor]:
    """``|∂loss/∂mean log π(y_w)|`` and ``|∂loss/∂mean log π(y_l)|`` per example, for logging.

    The size of the push each objective gives the chosen and the rejected response (the paper's
    gradient analysis, §3.3). ``policy`` must hold the very tensors the losses were computed from;
    the gradient is taken through the objective only, never through the model. Returns two ``(B,)``
    tensors; the derivative with respect to a mean is the one with respect to the sum times the
    token count.
    """
    grads = torch.autograd.grad(
        output_losses.sum(), [policy.chosen_sum, policy.rejected_sum], retain_graph=True, allow_unused=True
    )
    chosen, rejected = (
        torch.zeros_like(t) if g is None else g.detach()
        for g, t in zip(grads, [policy.chosen_sum, policy.rejected_sum], strict=True)
    )
    return (chosen * policy.chosen_count).abs(), (rejected * policy.rejected_count).abs()


__all__ = [
    "REGISTRY",
    "Objective",
    "ObjectiveOutput",
    "SequenceLogps",
    "get_objective",
    "mean_logp_gradients",
]
