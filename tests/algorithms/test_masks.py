import math

import torch
from torch.testing import assert_close

from rlaif_ray.algorithms import (
    entropy_from_logits,
    logprobs_from_logits,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
)

X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
M = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def test_masked_sum_and_mean_hand():
    # valid: 1, 2 | 4  -> sum 7, mean 7/3; per row: sums [3, 4], means [3/2, 4/1]
    assert_close(masked_sum(X, M), torch.tensor(7.0))
    assert_close(masked_mean(X, M), torch.tensor(7.0 / 3))
    assert_close(masked_sum(X, M, dim=1), torch.tensor([3.0, 4.0]))
    assert_close(masked_mean(X, M, dim=1), torch.tensor([1.5, 4.0]))


def test_masked_mean_empty_is_zero_and_bool_mask_works():
    empty = torch.zeros_like(M)
    assert masked_mean(X, empty).item() == 0.0
    assert_close(masked_mean(X, torch.tensor([[1, 1, 0], [0, 0, 0]]).bool(), dim=1),
                 torch.tensor([1.5, 0.0]))


def test_padding_nan_does_not_leak():
    x = X.clone()
    x[0, 2] = float("nan")
    x[1, 1] = float("inf")
    assert_close(masked_mean(x, M), torch.tensor(7.0 / 3))


def test_masked_var_hand():
    # valid [1, 2, 4], mean 7/3; squared deviations 16/9 + 1/9 + 25/9 = 42/9
    # biased: 42/9 / 3 = 14/9; unbiased: 42/9 / 2 = 7/3
    assert_close(masked_var(X, M), torch.tensor(14.0 / 9))
    assert_close(masked_var(X, M, unbiased=True), torch.tensor(7.0 / 3))
    # one valid element: unbiased variance undefined -> 0, not NaN
    one = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert masked_var(X, one, unbiased=True).item() == 0.0


def test_masked_whiten():
    torch.manual_seed(0)
    x = torch.randn(4, 6) * 3 + 5
    m = torch.ones(4, 6)
    m[1, 3:] = 0
    m[3, 1:] = 0
    w = masked_whiten(x, m)
    assert_close(masked_mean(w, m), torch.tensor(0.0), atol=1e-5, rtol=0)
    assert_close(masked_var(w, m), torch.tensor(1.0), atol=1e-4, rtol=0)
    assert (w[m == 0] == 0).all()
    # scale only: mean kept, variance 1
    s = masked_whiten(x, m, shift_mean=False)
    assert_close(masked_mean(s, m), masked_mean(x, m))
    assert_close(masked_var(s, m), torch.tensor(1.0), atol=1e-4, rtol=0)


def test_entropy_uniform_and_stable():
    # uniform over V = 4 -> H = log 4, whatever the common offset
    logits = torch.zeros(2, 3, 4)
    assert_close(entropy_from_logits(logits), torch.full((2, 3), math.log(4)))
    assert_close(entropy_from_logits(logits + 1e4), torch.full((2, 3), math.log(4)))
    torch.manual_seed(0)
    z = torch.randn(2, 3, 7) * 5
    expected = torch.distributions.Categorical(logits=z).entropy()
    assert_close(entropy_from_logits(z), expected)


def test_logprobs_from_logits():
    # logits = log p with p = [.1, .2, .3, .4]: token 2 -> log 0.3, token 0 -> log 0.1
    logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])).expand(1, 2, 4)
    ids = torch.tensor([[2, 0]])
    assert_close(logprobs_from_logits(logits, ids), torch.log(torch.tensor([[0.3, 0.1]])))
    torch.manual_seed(0)
    z = torch.randn(3, 5, 11)
    ids = torch.randint(0, 11, (3, 5))
    expected = torch.log_softmax(z, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    assert_close(logprobs_from_logits(z, ids), expected)
