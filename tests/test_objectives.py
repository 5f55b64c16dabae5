"""Objectives: hand-worked values, identities between objectives, SimPER's bounds and gradient, TRL agreement."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from simper.objectives import REGISTRY, SequenceLogps, get_objective, mean_logp_gradients


def logps(chosen_sum, rejected_sum, chosen_count=1.0, rejected_count=1.0) -> SequenceLogps:
    def t(x):
        return torch.as_tensor(x, dtype=torch.float32).reshape(-1)

    c, r = t(chosen_sum), t(rejected_sum)
    return SequenceLogps(c, r, t(chosen_count).expand_as(c), t(rejected_count).expand_as(r))


ZERO_REF = logps(0.0, 0.0)


def test_simper_hand_worked():
    # mean_c = log 0.5 (sum 2·log 0.5 over 2 tokens), mean_r = log 0.25: −0.5 + 0.25 = −0.25
    out = REGISTRY["simper"](logps(2 * math.log(0.5), 3 * math.log(0.25), 2, 3))
    assert_close(out.losses, torch.tensor([-0.25]))
    assert_close(out.chosen_rewards, torch.tensor([0.5]))
    assert_close(out.rejected_rewards, torch.tensor([0.25]))


def test_simper_sum_uses_sums_not_means():
    # sums log 0.5 and log 0.25 over 4 tokens each: −0.5 + 0.25, whatever the counts
    out = REGISTRY["simper-sum"](logps(math.log(0.5), math.log(0.25), 4, 4))
    assert_close(out.losses, torch.tensor([-0.25]))


def test_simper_ref_is_zero_at_start_and_uses_mean_ratio():
    policy = logps(-6.0, -9.0, 3, 3)
    assert_close(REGISTRY["simper-ref"](policy, policy).losses, torch.tensor([0.0]))
    # ratios: chosen (−6 − (−9))/3 = 1, rejected (−9 − (−6))/3 = −1: −e + e^−1
    out = REGISTRY["simper-ref"](policy, logps(-9.0, -6.0, 3, 3))
    assert_close(out.losses, torch.tensor([-math.e + math.exp(-1)]))


def test_simper_bounded_for_any_logps():
    torch.manual_seed(0)
    sums = -torch.rand(1000) * 1e4
    counts = torch.randint(1, 500, (1000,)).float()
    out = REGISTRY["simper"](SequenceLogps(sums, sums.flip(0), counts, counts.flip(0)))
    assert out.losses.min() >= -1 and out.losses.max() <= 1
    assert torch.isfinite(out.losses).all()


def test_simper_gradient_is_inverse_perplexity():
    mean_c = torch.tensor([-0.3, -2.0, -7.0], requires_grad=True)
    mean_r = torch.tensor([-0.5, -1.0, -7.0], requires_grad=True)
    ones = torch.ones(3)
    REGISTRY["simper"](SequenceLogps(mean_c, mean_r, ones, ones)).losses.sum().backward()
    assert_close(mean_c.grad, -mean_c.detach().exp())
    assert_close(mean_r.grad, mean_r.detach().exp())


def test_dpo_hand_worked_and_trl_formula():
    # zero log-ratios: z = 0, loss = log 2
    assert_close(REGISTRY["dpo"](logps(-5.0, -7.0), logps(-5.0, -7.0)).losses, torch.tensor([math.log(2)]))
    # TRL DPOTrainer._compute_loss, loss_type="sigmoid" (trl/trainer/dpo_trainer.py):
    #   per_sequence_loss = -F.logsigmoid(self.beta * delta_score), delta = chosen_logratios − rejected_logratios
    pol, ref = logps([-10.0, -3.0], [-12.0, -1.0]), logps([-11.0, -4.0], [-10.0, -2.0])
    delta = (pol.chosen_sum - ref.chosen_sum) - (pol.rejected_sum - ref.rejected_sum)
    assert_close(REGISTRY["dpo"](pol, ref, beta=0.3).losses, -torch.nn.functional.logsigmoid(0.3 * delta))


def test_ipo_hand_worked():
    # h = 0, β = 0.1: (0 − 5)² = 25
    assert_close(REGISTRY["ipo"](logps(-4.0, -6.0), logps(-4.0, -6.0)).losses, torch.tensor([25.0]))


def test_kto_hand_worked_and_detached_reference_point():
    pol = logps(-5.0, -7.0)
    assert_close(REGISTRY["kto"](pol, pol).losses, torch.tensor([1.0]))  # z = 0: 0.5 + 0.5
    # r_w = 2, r_l = −1: z = clamp(mean(2, −1), 0) = 0.5; β = 1
    out = REGISTRY["kto"](logps(-3.0, -8.0), logps(-5.0, -7.0), beta=1.0)
    expected = (1 - torch.sigmoid(torch.tensor(1.5))) + (1 - torch.sigmoid(torch.tensor(1.5)))
    assert_close(out.losses, expected.reshape(1))


def test_cpo_and_orpo_hand_worked():
    # equal sums: log 2, plus NLL = −mean_c = 2
    assert_close(REGISTRY["cpo"](logps(-4.0, -4.0, 2, 2)).losses, torch.tensor([math.log(2) + 2]))
    # ORPO: mean_c = mean_r = log 0.5 → odds ratio 0: NLL log 2 + 0.1·log 2
    out = REGISTRY["orpo"](logps(math.log(0.5), math.log(0.5)))
    assert_close(out.losses, torch.tensor([math.log(2) * 1.1]))


def test_simpo_hand_worked_and_gamma_zero_is_reference_free_dpo_on_means():
    assert_close(
        REGISTRY["simpo"](logps(-4.0, -4.0, 2, 2)).losses,
        torch.tensor([-math.log(torch.sigmoid(torch.tensor(-1.0)))]),
    )
    pol = logps([-12.0, -3.0, -40.0], [-9.0, -8.0, -2.0], [4, 3, 10], [3, 2, 1])
    means = logps(pol.chosen_mean, pol.rejected_mean)
    simpo = REGISTRY["simpo"](pol, beta=2.5, gamma=0.0)
    dpo = REGISTRY["dpo"](means, logps([0.0] * 3, [0.0] * 3), beta=2.5)
    assert_close(simpo.losses, dpo.losses)


def test_simper_equals_simper_ref_with_a_uniform_zero_reference():
    pol = logps([-12.0, -3.0], [-9.0, -8.0], [4, 3], [3, 2])
    assert_close(REGISTRY["simper"](pol).losses, REGISTRY["simper-ref"](pol, logps([0.0, 0.0], [0.0, 0.0])).losses)


def _trl_cpo(loss_type, beta, gamma=0.5):
    from trl.experimental.cpo import CPOTrainer

    trainer = SimpleNamespace(
        alpha=0.0,
        beta=beta,
        loss_type=loss_type,
        label_smoothing=0.0,
        simpo_gamma=gamma,
        accelerator=SimpleNamespace(device=torch.device("cpu")),
    )
    return lambda c, r: CPOTrainer.cpo_loss(trainer, c, r)[0]


CASES = {"chosen": [-12.0, -3.0, -40.0, -1.0], "rejected": [-9.0, -8.0, -2.0, -1.5]}
COUNTS = {"chosen": [4.0, 3.0, 10.0, 1.0], "rejected": [3.0, 2.0, 1.0, 1.0]}


def test_agrees_with_trl_cpo_sigmoid():
    pol = logps(CASES["chosen"], CASES["rejected"], COUNTS["chosen"], COUNTS["rejected"])
    ours = REGISTRY["cpo"](pol, beta=0.2, nll_weight=0.0).losses  # TRL's cpo_loss excludes the NLL term
    assert_close(ours, _trl_cpo("sigmoid", 0.2)(pol.chosen_sum, pol.rejected_sum), atol=1e-5, rtol=0)


def test_agrees_with_trl_cpo_hinge_as_slic():
    pol = logps(CASES["chosen"], CASES["rejected"])
    ours = REGISTRY["slic"](pol, beta=0.1, nll_weight=0.0).losses
    assert_close(ours, _trl_cpo("hinge", 0.1)(pol.chosen_sum, pol.rejected_sum), atol=1e-5, rtol=0)


def test_agrees_with_trl_cpo_simpo_and_ipo_on_mean_logps():
    pol = logps(CASES["chosen"], CASES["rejected"], COUNTS["chosen"], COUNTS["rejected"])
    ours = REGISTRY["simpo"](pol, beta=2.0, gamma=1.0).losses
    # TRL's simpo: logits = c − r − simpo_gamma/β, loss = −logsigmoid(β·logits), on averaged log-probs
    theirs = _trl_cpo("simpo", 2.0, gamma=1.0)(pol.chosen_mean, pol.rejected_mean)
    assert_close(ours, theirs, atol=1e-5, rtol=0)
    zero = logps([0.0] * 4, [0.0] * 4)
    ipo = REGISTRY["ipo"](pol, zero, beta=0.1).losses
    assert_close(ipo, _trl_cpo("ipo", 0.1)(pol.chosen_mean, pol.rejected_mean), atol=1e-5, rtol=0)


def test_agrees_with_trl_orpo_odds_ratio():
    from trl.experimental.orpo import ORPOTrainer

    pol = logps(CASES["chosen"], CASES["rejected"], COUNTS["chosen"], COUNTS["rejected"])
    trainer = SimpleNamespace(beta=0.1, accelerator=SimpleNamespace(device=torch.device("cpu")))
    ratio_losses = ORPOTrainer.odds_ratio_loss(trainer, pol.chosen_mean, pol.rejected_mean)[0]
    # TRL: loss = policy_nll_loss − losses.mean(); per example NLL is −mean_c
    assert_close(REGISTRY["orpo"](pol).losses, -pol.chosen_mean - ratio_losses, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_finite_for_extreme_logps(name):
    objective = get_objective(name)
    sums = torch.tensor([-1e4, -1e-6, 0.0, -50.0], requires_grad=True)
    rejected = torch.tensor([0.0, -1e4, -1e-6, -50.0], requires_grad=True)
    counts = torch.tensor([1.0, 7.0, 1.0, 100.0])
    pol = SequenceLogps(sums, rejected, counts, counts)
    ref = logps([-2.0, -3.0, -1.0, -60.0], [-2.0, -3.0, -1.0, -40.0], counts, counts)
    out = objective(pol, ref if objective.needs_reference else None)
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all() and torch.isfinite(sums.grad).all() and torch.isfinite(rejected.grad).all()


def test_needs_reference_flags_and_unknown_parameter():
    assert {n for n, o in REGISTRY.items() if o.needs_reference} == {"simper-ref", "dpo", "ipo", "kto"}
    with pytest.raises(ValueError, match="has no parameter 'beta'"):
        REGISTRY["simper"](logps(-1.0, -2.0), beta=0.1)
    with pytest.raises(ValueError, match="unknown objective"):
        get_objective("dpo2")


def test_mean_logp_gradients_match_autograd():
    chosen_sum = torch.tensor([-6.0, -2.0], requires_grad=True)
    rejected_sum = torch.tensor([-3.0, -9.0], requires_grad=True)
    counts_c, counts_r = torch.tensor([3.0, 4.0]), torch.tensor([2.0, 3.0])
    pol = SequenceLogps(chosen_sum, rejected_sum, counts_c, counts_r)
    out = REGISTRY["simper"](pol)
    grad_c, grad_r = mean_logp_gradients(out.losses, pol)
    assert_close(grad_c, (chosen_sum / counts_c).detach().exp())
    assert_close(grad_r, (rejected_sum / counts_r).detach().exp())


logp = st.floats(min_value=-1e4, max_value=0.0, allow_nan=False)
count = st.integers(min_value=1, max_value=4096)


@settings(max_examples=200, deadline=None)
@given(logp, logp, logp, logp, count, count)
def test_property_finite_and_simper_bounded(chosen, rejected, ref_chosen, ref_rejected, n_chosen, n_rejected):
    for name, objective in REGISTRY.items():
        c = torch.tensor([chosen], requires_grad=True)
        r = torch.tensor([rejected], requires_grad=True)
        pol = SequenceLogps(c, r, torch.tensor([float(n_chosen)]), torch.tensor([float(n_rejected)]))
        ref = logps(ref_chosen, ref_rejected, n_chosen, n_rejected) if objective.needs_reference else None
        out = objective(pol, ref)
        out.losses.sum().backward()
        assert torch.isfinite(out.losses).all() and torch.isfinite(c.grad).all() and torch.isfinite(r.grad).all(), name
        if name == "simper":
            assert -1 <= out.losses.item() <= 1
