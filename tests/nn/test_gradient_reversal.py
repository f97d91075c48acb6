"""Gradient reversal: identity forward, ``-lambda`` times the gradient backward, everywhere."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_synth.nn import GradientReversal, grad_reverse


def _reversal_probe(lambda_: float, layer=grad_reverse):
    """``F(x) = g(GRL(x)) - (1 + lambda) g(x).detach()``.

    Its value is ``-lambda g(x)``, so the *numerical* gradient gradcheck takes is
    ``-lambda g'(x)``; the detached term has no analytical gradient, so the *analytical*
    one is whatever flows back through the reversal layer. gradcheck passes exactly when
    the layer multiplies the gradient by ``-lambda``.
    """

    def g(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x) * x.roll(1, dims=-1) + x**2

    def probe(x: torch.Tensor) -> torch.Tensor:
        return g(layer(x, lambda_)) - (1 + lambda_) * g(x).detach()

    return probe


@pytest.mark.parametrize("lambda_", [0.0, 0.3, 1.0, 2.5])
def test_gradcheck_reversed_gradient_in_double_precision(lambda_: float) -> None:
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_reversal_probe(lambda_), (x,), eps=1e-6, atol=1e-6)


def test_gradcheck_fails_without_the_reversal() -> None:
    # The probe is not vacuous: a plain identity, or a layer that forgot to negate, fails it.
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    for wrong in (lambda x, lam: x, lambda x, lam: grad_reverse(x, -lam)):
        probe = _reversal_probe(0.5, layer=wrong)
        assert not torch.autograd.gradcheck(probe, (x,), eps=1e-6, raise_exception=False)


def test_forward_is_identity_and_gradient_is_negated_and_scaled() -> None:
    layer = GradientReversal(0.5)
    x = torch.randn(4, 3, requires_grad=True)
    y = layer(x)
    assert torch.equal(y, x)
    upstream = torch.randn(4, 3)
    y.backward(upstream)
    assert torch.equal(x.grad, -0.5 * upstream)
    layer.set_lambda(2.0)
    x.grad = None
    layer(x).backward(upstream)
    assert torch.equal(x.grad, -2.0 * upstream)
    assert layer.lambda_ == 2.0 and "lambda_=2" in repr(layer)


def test_lambda_is_not_saved_in_the_state_dict() -> None:
    # A schedule recomputes it; a stale value in a checkpoint must not override it.
    assert GradientReversal(0.7).state_dict() == {}


def test_under_bf16_autocast_the_gradient_is_minus_lambda_times_the_plain_one() -> None:
    torch.manual_seed(0)
    first, second = nn.Linear(6, 8), nn.Linear(8, 1)
    x = torch.randn(5, 6)

    def grads(reverse: bool) -> torch.Tensor:
        first.zero_grad()
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            hidden = first(x)
            assert hidden.dtype == torch.bfloat16
            if reverse:
                hidden = grad_reverse(hidden, 0.25)
                assert hidden.dtype == torch.bfloat16
            out = second(hidden)
        out.float().sum().backward()
        return first.weight.grad.clone()

    plain, reversed_ = grads(False), grads(True)
    assert reversed_.dtype == torch.float32
    assert torch.allclose(reversed_, -0.25 * plain, rtol=1e-2, atol=1e-3)
    assert plain.abs().sum() > 0


def test_under_torch_compile_the_lambda_changes_without_recompiling() -> None:
    # aot_eager runs Dynamo's capture and AOTAutograd's tracing of the custom backward,
    # which is where a gradient-reversal layer can break; inductor only changes the
    # kernels and would cost tens of seconds of C++ compilation on a 2-core machine.
    from torch._dynamo.testing import CompileCounterWithBackend

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), GradientReversal(1.0), nn.Linear(4, 1))
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    x = torch.randn(3, 4)
    grads = {}
    for lambda_ in (1.0, 0.5):
        model[1].set_lambda(lambda_)
        model.zero_grad()
        compiled(x).sum().backward()
        grads[lambda_] = model[0].weight.grad.clone()
        model.zero_grad()
        model[2](model[0](x)).sum().backward()
        assert torch.allclose(grads[lambda_], -lambda_ * model[0].weight.grad, atol=1e-6)
    assert counter.frame_count == 1, "changing lambda recompiled the model"
