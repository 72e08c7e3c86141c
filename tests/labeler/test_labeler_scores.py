"""Candidate scoring, direct reward and pairwise preference, against hand-worked numbers."""

import math

import pytest
import torch

from rlaif_ray.labeler import (
    candidate_logprobs,
    candidate_probs,
    direct_reward,
    expected_score,
    pairwise_prob_first,
    plan_candidate_queries,
    preference_from_swapped,
)

A, B, C = 11, 22, 33  # token ids: " 1" = [A], " 10" = [A, B], " 2" = [C]


def test_direct_reward_hand_cases():
    one_hot_10 = torch.zeros(10)
    one_hot_10[9] = 1.0
    one_hot_1 = torch.zeros(10)
    one_hot_1[0] = 1.0
    # s = 10 → 2·9/9 − 1 = 1;  s = 1 → 2·0/9 − 1 = −1
    assert direct_reward(one_hot_10).item() == pytest.approx(1.0)
    assert direct_reward(one_hot_1).item() == pytest.approx(-1.0)
    # uniform: s = (1+…+10)/10 = 5.5 → 2·4.5/9 − 1 = 0
    uniform = torch.full((10,), 0.1)
    assert expected_score(uniform).item() == pytest.approx(5.5)
    assert direct_reward(uniform).item() == pytest.approx(0.0)


def test_direct_reward_renormalises_batches_and_nan_row():
    # Mass 0.2 on "4" and 0.2 on "8" (sum 0.4): renormalised 0.5/0.5 → s = 6
    # → reward 2·5/9 − 1 = 1/9.
    p = [[0.0] * 10, [0.0] * 10]
    p[0][3], p[0][7] = 0.2, 0.2
    r = direct_reward(p)  # a list works too
    assert r.shape == (2,)
    assert r[0].item() == pytest.approx(1 / 9)
    assert math.isnan(r[1].item())  # all-zero row → NaN, the caller drops it
    with pytest.raises(ValueError, match="last dim 10"):
        direct_reward(torch.ones(3, 9))


def test_plan_candidate_queries():
    plan = plan_candidate_queries([[A], [A, B], [C]])
    assert plan == {(): (A, C), (A,): (B,)}
    # A deeper shared prefix: [7, 8, 9] and [7, 8, 5] need () → 7, (7,) → 8, (7, 8) → 5, 9.
    assert plan_candidate_queries([[7, 8, 9], [7, 8, 5]]) == {
        (): (7,), (7,): (8,), (7, 8): (5, 9)
    }


def test_candidate_logprobs_prefix_overlap_hand_case():
    # P(A) = 0.5, P(B | A) = 0.4, P(C) = 0.1.
    # P*(" 10") = 0.5·0.4 = 0.2;  P*(" 1") = 0.5 − 0.2 = 0.3;  P*(" 2") = 0.1.
    answers = {(): {A: math.log(0.5), C: math.log(0.1)}, (A,): {B: math.log(0.4)}}
    lp = candidate_logprobs([[A], [A, B], [C]], answers)
    assert [math.exp(x) for x in lp] == pytest.approx([0.3, 0.2, 0.1])
    # Renormalised over the set: total 0.6 → (0.5, 1/3, 1/6).
    probs = candidate_probs([[A], [A, B], [C]], answers)
    assert probs.tolist() == pytest.approx([0.5, 1 / 3, 1 / 6], rel=1e-6)
    raw = candidate_probs([[A], [A, B], [C]], answers, renormalise=False)
    assert raw.tolist() == pytest.approx([0.3, 0.2, 0.1], rel=1e-6)


def test_nested_prefixes_subtract_only_nearest_extension():
    # [A] ⊂ [A, B] ⊂ [A, B, C]; P(A)=0.5, P(B|A)=0.4, P(C|A,B)=0.25.
    # P*(ABC) = 0.05; P*(AB) = 0.2 − 0.05 = 0.15; P*(A) = 0.5 − 0.2 = 0.3 (not 0.25).
    answers = {(): {A: math.log(0.5)}, (A,): {B: math.log(0.4)}, (A, B): {C: math.log(0.25)}}
    lp = candidate_logprobs([[A], [A, B], [A, B, C]], answers)
    assert [math.exp(x) for x in lp] == pytest.approx([0.3, 0.15, 0.05])


def test_labeler_certain_of_ten_scores_ten():
    # Ten candidates " 1".." 10": " 1" = [1], ..., " 9" = [9], " 10" = [1, 0].
    cands = [[i] for i in range(1, 10)] + [[1, 0]]
    first = {i: -1e4 for i in range(2, 10)}
    first[1] = 0.0  # P(token "1") = 1
    answers = {(): first, (1,): {0: 0.0}}  # P("0" | "1") = 1 → the answer is " 10"
    probs = candidate_probs(cands, answers)
    # P*(" 1") = 1·(1 − 1) = 0, so all mass is on " 10": s = 10, reward 1 (not s = 5.5).
    assert probs[0].item() == 0.0
    assert expected_score(probs).item() == pytest.approx(10.0)
    assert direct_reward(probs).item() == pytest.approx(1.0)


def test_candidate_logprobs_errors():
    with pytest.raises(KeyError, match="plan_candidate_queries"):
        candidate_logprobs([[A, B]], {(): {A: 0.0}})
    with pytest.raises(ValueError, match="distinct"):
        plan_candidate_queries([[A], [A]])
    with pytest.raises(ValueError, match="non-empty"):
        candidate_logprobs([[]], {})


def test_pairwise_prob_first():
    # softmax(log 0.3, log 0.1)[0] = 0.3 / 0.4 = 0.75
    assert pairwise_prob_first(math.log(0.3), math.log(0.1)) == pytest.approx(0.75)
    assert pairwise_prob_first(-2000.0, 0.0) == pytest.approx(0.0)  # no overflow
    t = pairwise_prob_first(torch.tensor([0.0, math.log(3.0)]), torch.tensor([0.0, 0.0]))
    assert t.tolist() == pytest.approx([0.5, 0.75])
    assert math.isnan(pairwise_prob_first(-math.inf, -math.inf))


def test_preference_from_swapped():
    # A labeler that always says "1": p_ab = p_ba = 1 → (1 + 1 − 1)/2 = 0.5.
    assert preference_from_swapped(1.0, 1.0) == 0.5
    # Consistent labeler preferring A: p_ab = 0.9, p_ba = 0.2 → (0.9 + 0.8)/2 = 0.85.
    assert preference_from_swapped(0.9, 0.2) == pytest.approx(0.85)
    t = preference_from_swapped(torch.tensor([0.6, 0.3]), torch.tensor([0.6, 0.9]))
    # (0.6 + 0.4)/2 = 0.5;  (0.3 + 0.1)/2 = 0.2
    assert t.tolist() == pytest.approx([0.5, 0.2])
