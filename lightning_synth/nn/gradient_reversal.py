"""Gradient reversal (Ganin & Lempitsky, 2015): identity forward, ``-lambda x`` gradient backward.

Placed between a feature extractor and a domain classifier, the layer lets the domain
classifier learn to tell the domains apart while the feature extractor receives the
*negated* gradient of the domain loss, i.e. learns features that fool it.

The coefficient travels as a tensor, not a Python float, so that changing it every step
(the schedule of :mod:`lightning_synth.nn.schedules`) never makes ``torch.compile``
recompile; the layer has no parameters, so DDP sees nothing of it; and the backward is a
multiplication in the incoming gradient's own dtype, so it is exact under autocast.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["GradientReversal", "grad_reverse"]


class _GradientReversalFunction(torch.autograd.Function):
    """``forward(x, coeff) = x``; ``backward(g) = -coeff * g`` (no gradient for ``coeff``)."""

    @staticmethod
    def forward(x: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
        # A view, not ``x`` itself: autograd must see a new tensor to attach the backward to.
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, torch.Tensor], output: Any) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (coeff,) = ctx.saved_tensors
        return grad_output * (-coeff).to(grad_output.dtype), None


def grad_reverse(x: torch.Tensor, coeff: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Return ``x`` unchanged; its gradient is multiplied by ``-coeff`` on the way back.

    Args:
        x: any tensor (features ``B x D`` or ``B x D x H x W``).
        coeff: the reversal strength lambda (a float or a 0-d tensor); 0 blocks the gradient.
    """
    coeff = torch.as_tensor(coeff, dtype=torch.float32, device=x.device).detach()
    return _GradientReversalFunction.apply(x, coeff)


class GradientReversal(nn.Module):
    """Gradient-reversal layer with a settable coefficient (see :func:`grad_reverse`).

    The coefficient lives in a non-persistent buffer, so it follows the module to any
    device, is not saved in checkpoints (a schedule recomputes it), and can be changed
    in place with :meth:`set_lambda` without recompiling a compiled model.

    Args:
        lambda_: initial reversal strength.
    """

    coeff: torch.Tensor

    def __init__(self, lambda_: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("coeff", torch.tensor(float(lambda_)), persistent=False)

    @property
    def lambda_(self) -> float:
        """The current reversal strength."""
        return float(self.coeff)

    def set_lambda(self, value: float) -> None:
        """Set the reversal strength (in place).

        Args:
            value: new lambda; 0 turns the layer into a gradient blocker.
        """
        with torch.no_grad():
            self.coeff.fill_(float(value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GradientReversalFunction.apply(x, self.coeff)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_:.4g}"
