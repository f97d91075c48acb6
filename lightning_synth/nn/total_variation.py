"""Total variation (TV): the regulariser, and a fast solver for TV denoising.

TV denoising (Rudin, Osher and Fatemi, 1992) solves, for each image ``y``,

    min_x  1/2 ||x - y||^2  +  weight * TV(x),

the objective of scikit-image's ``denoise_tv_chambolle`` with the same ``weight``, the
same forward differences and the same (Neumann) boundary, so one number means the same
result in both. Written as ``||x - y||^2 + lambda * TV(x)``, ``lambda = 2 * weight``.

``TV`` is isotropic (``sum sqrt(dy^2 + dx^2)``, the default) or anisotropic
(``sum |dy| + |dx|``), per channel (as scikit-image does) or with the channels coupled
inside the square root (vectorial TV, which keeps colour edges aligned).

:class:`ChambollePockTV` solves it with the accelerated primal-dual method of Chambolle
and Pock (2011, Algorithm 2), one iteration per ``step()``, and certifies its accuracy:
the duality gap bounds the distance to the exact minimiser,
``||x - x*||^2 / 2 <= P(x) - D(p)``. The dual ``p`` has a primal image of its own,
``x(p) = y + weight * div p``, and the gap bounds both distances at once,
``||x - x*||^2 / 2 + ||x(p) - x*||^2 / 2 <= P(x) - D(p)``, so their average
``(x + x(p)) / 2`` is certified at least sqrt(2) times tighter:
``||(x + x(p)) / 2 - x*||^2 <= P(x) - D(p) - ||x - x(p)||^2 / 4`` (:func:`averaged_rms`).
:func:`tv_denoise` runs the iteration until that bound says every image's average is
within ``tol`` (root mean square) of its exact solution, and returns the averages.
All functions take ``B x C x H x W`` images and work on any device and float dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_synth.errors import InputError

__all__ = [
    "TVNorm",
    "image_gradient",
    "divergence",
    "total_variation",
    "rof_objective",
    "TotalVariation",
    "ChambollePockTV",
    "tv_denoise",
    "tv_denoise_luma_chroma",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
    "TVSmoothing",
    "gap_to_rms",
    "averaged_rms",
    "default_tol",
    "RELATIVE_TOL",
]

TVNorm = Literal["isotropic", "anisotropic"]

#: Initial primal step and acceleration of Chambolle-Pock: the fewest iterations to a
#: certified 2/255 (the default tolerance then) on scikit-image's sample photographs (sigma
#: 0.1 and 0.2) over a grid of both (tau 0.35 ... 1, gamma 0.35 ... 1); 2-3 iterations fewer
#: than (1, 0.5), the first guess.
DEFAULT_TAU = 0.7
DEFAULT_GAMMA = 0.85

#: Default certified tolerance per unit of ``weight``: ``tol = weight / 16``. How much a
#: distance ``d`` from the exact minimiser moves PSNR scales with ``d`` over the result's
#: own error, which grows with the noise, and so with the PSNR-best weight (about 0.8 x
#: sigma); a tolerance proportional to the weight keeps that effect alike at every noise
#: level. With 1/16 our PSNR is at least scikit-image's on all eight rows of
#: ``benchmarks/tv_denoise.py`` (1/20 ... 1/30 gain at most 0.03 dB there, for up to 1.6x
#: the time); a fixed 2/255 lost 0.007 dB on camera at sigma 0.1 (weight 0.08) and spent
#: iterations on chelsea at sigma 0.2 (weight 0.26).
RELATIVE_TOL = 1.0 / 16.0

#: Squared operator norm of the 2-D forward-difference gradient (``||grad||^2 <= 8``).
_GRADIENT_NORM_SQUARED = 8.0


def _check_images(x: torch.Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected B x C x H x W images, got shape {tuple(x.shape)}")


def image_gradient(x: torch.Tensor) -> torch.Tensor:
    """Forward differences down and right: ``B x C x H x W -> B x C x 2 x H x W``.

    The last row of the vertical and the last column of the horizontal difference are
    zero (Neumann boundary), as in scikit-image.

    Args:
        x: ``B x C x H x W`` images.
    """
    _check_images(x)
    down = F.pad(torch.diff(x, dim=-2), (0, 0, 0, 1))
    right = F.pad(torch.diff(x, dim=-1), (0, 1))
    return torch.stack((down, right), dim=2)


def divergence(p: torch.Tensor) -> torch.Tensor:
    """The negative adjoint of :func:`image_gradient`: ``B x C x 2 x H x W -> B x C x H x W``.

    ``<image_gradient(x), p> == -<x, divergence(p)>`` for every ``x`` and ``p``.

    Args:
        p: a vector field, as :func:`image_gradient` returns.
    """
    down, right = p[:, :, 0], p[:, :, 1]
    # Only the entries the gradient can fill count (not the last row / column).
    down = F.pad(down[..., :-1, :], (0, 0, 1, 1))
    right = F.pad(right[..., :, :-1], (1, 1))
    return torch.diff(down, dim=-2) + torch.diff(right, dim=-1)


def total_variation(
    x: torch.Tensor,
    norm: TVNorm = "isotropic",
    coupled_channels: bool = False,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """Total variation of each image: a ``B`` tensor (sum over channels and pixels).

    Args:
        x: ``B x C x H x W`` images.
        norm: ``isotropic`` (Euclidean length of the gradient at each pixel) or
            ``anisotropic`` (sum of the absolute differences).
        coupled_channels: for ``isotropic``, take the length over all channels at once
            (vectorial TV) instead of per channel.
        smoothing: ``eps > 0`` replaces ``|g|`` by ``sqrt(|g|^2 + eps^2) - eps``, which is
            differentiable at 0 (what gradient-based optimizers need); 0 is exact TV.
    """
    _check_images(x)
    down, right = torch.diff(x, dim=-2), torch.diff(x, dim=-1)
    if norm == "anisotropic":
        if smoothing == 0:
            return _per_image_sum(down.abs()) + _per_image_sum(right.abs())
        return _per_image_sum(_smooth_length(down.square(), smoothing)) + _per_image_sum(
            _smooth_length(right.square(), smoothing)
        )
    if norm != "isotropic":
        raise ValueError(f"norm must be 'isotropic' or 'anisotropic', got {norm!r}")
    squared = F.pad(down.square(), (0, 0, 0, 1)) + F.pad(right.square(), (0, 1))
    if coupled_channels:
        squared = squared.sum(dim=1, keepdim=True)
    return _per_image_sum(_smooth_length(squared, smoothing))


def _smooth_length(squared: torch.Tensor, eps: float) -> torch.Tensor:
    """``sqrt(squared + eps^2) - eps``; for ``eps = 0`` a square root whose gradient is 0 at 0."""
    if eps > 0:
        return torch.sqrt(squared + eps * eps) - eps
    if not squared.requires_grad:
        return squared.sqrt()
    positive = squared > 0
    return torch.where(positive, torch.where(positive, squared, 1.0).sqrt(), 0.0)


def _accumulator(x: torch.Tensor) -> torch.dtype:
    """float64 for sums of many pixels, except where a device has none (Apple's MPS)."""
    return torch.float32 if x.device.type == "mps" else torch.float64


def _per_image_sum(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).sum(dim=1, dtype=_accumulator(x)).to(x.dtype)


def rof_objective(
    x: torch.Tensor,
    y: torch.Tensor,
    weight: float,
    norm: TVNorm = "isotropic",
    coupled_channels: bool = False,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """``1/2 ||x - y||^2 + weight * TV(x)`` of each image: a ``B`` tensor.

    Args:
        x: ``B x C x H x W`` candidate images.
        y: ``B x C x H x W`` noisy images.
        weight: strength of the TV term (scikit-image's ``weight``).
        norm: see :func:`total_variation`.
        coupled_channels: see :func:`total_variation`.
        smoothing: see :func:`total_variation`.
    """
    fidelity = 0.5 * _per_image_sum((x - y).square())
    return fidelity + weight * total_variation(x, norm, coupled_channels, smoothing)


class TotalVariation(nn.Module):
    """TV as a loss: mean over images of ``TV(x) / (C * H * W)`` (e.g. a smoothness prior).

    Args:
        norm: see :func:`total_variation`.
        coupled_channels: see :func:`total_variation`.
        smoothing: see :func:`total_variation`; a small ``eps`` keeps gradients finite.
    """

    def __init__(
        self, norm: TVNorm = "isotropic", coupled_channels: bool = False, smoothing: float = 1e-3
    ) -> None:
        super().__init__()
        self.norm = norm
        self.coupled_channels = coupled_channels
        self.smoothing = smoothing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tv = total_variation(x, self.norm, self.coupled_channels, self.smoothing)
        return (tv / x[0].numel()).mean()


class _PrimalDual:
    """The work of one Chambolle-Pock run on images ``x`` (updated in place): the buffers,
    and views into them made once, so an iteration is 15-19 tensor operations (by norm,
    channels and device) and no allocation. ``state`` holds what must survive a
    checkpoint."""

    def __init__(
        self,
        x: torch.Tensor,
        state: dict[str, Any],
        weight: float,
        norm: TVNorm,
        coupled_channels: bool,
        gamma: float,
    ) -> None:
        _check_images(x)
        if norm not in ("isotropic", "anisotropic"):
            raise InputError(f"norm must be 'isotropic' or 'anisotropic', got {norm!r}")
        self.x, self.state = x, state
        # One channel: coupled and per-channel TV agree; the per-channel path is faster.
        coupled = coupled_channels and x.shape[1] > 1
        self.weight, self.norm, self.coupled, self.gamma = weight, norm, coupled, gamma
        # Dual field scaled to the unit ball, with a zero first row and column so that
        # the divergence is two shifted differences.
        dual, extrapolated = state["dual"], state["extrapolated"]
        self.dual = dual
        self.inner = dual[:, :, :, 1:, 1:]
        self.down, self.right = dual[:, :, 0, 1:, 1:], dual[:, :, 1, 1:, 1:]
        self.down_prev, self.right_prev = dual[:, :, 0, :-1, 1:], dual[:, :, 1, 1:, :-1]
        self.down_step, self.right_step = self.down[..., :-1, :], self.right[..., :, :-1]
        self.below, self.above = extrapolated[..., 1:, :], extrapolated[..., :-1, :]
        self.after, self.before = extrapolated[..., :, 1:], extrapolated[..., :, :-1]
        self.extrapolated = extrapolated
        self.difference = torch.empty_like(x)
        self.difference_down = self.difference[..., :-1, :]
        self.difference_right = self.difference[..., :, :-1]
        channels = 1 if coupled else x.shape[1]
        self.length = x.new_empty(x.shape[0], channels, 1, *x.shape[-2:])
        self.squared = self.length[:, :, 0]
        # Per-channel squared lengths, summed over channels into ``squared`` when coupled.
        self.channel_squared = torch.empty_like(self.down) if coupled else self.squared
        # Coupled on a CPU: the squared length as a chain of multiply-adds over the 2 C
        # components, about a third cheaper than squares plus a strided channel sum (which
        # stays on GPUs, where every extra kernel launch costs more than the pixels).
        self.components: list[torch.Tensor] = []
        if coupled and x.device.type == "cpu":
            self.components = [self.inner[:, c, k] for c in range(x.shape[1]) for k in (0, 1)]
            self.squared_sum = self.squared[:, 0]
        self.data = torch.empty_like(x)  # y + div p for the current p, once valid
        self.valid = False

    @staticmethod
    def new_state(x: torch.Tensor, tau: float) -> dict[str, Any]:
        height, width = x.shape[-2:]
        return {
            "dual": x.new_zeros(*x.shape[:2], 2, height + 1, width + 1),
            "extrapolated": x.detach().clone(),
            "tau": float(tau),
            "sigma": 1.0 / (_GRADIENT_NORM_SQUARED * float(tau)),
            "iterations": 0,
        }

    def iterate(self, y: torch.Tensor) -> None:
        state, weight, x, data = self.state, self.weight, self.x, self.data
        tau, sigma = state["tau"], state["sigma"]
        # Dual ascent along the gradient of the extrapolated image, then p / max(1, |p|).
        step = sigma / weight
        torch.sub(self.below, self.above, out=self.difference_down)
        self.down_step.add_(self.difference_down, alpha=step)
        torch.sub(self.after, self.before, out=self.difference_right)
        self.right_step.add_(self.difference_right, alpha=step)
        if self.norm == "anisotropic":
            self.inner.clamp_(-1.0, 1.0)
        else:
            if self.components:
                first, *rest = self.components
                torch.mul(first, first, out=self.squared_sum)
                for component in rest:
                    self.squared_sum.addcmul_(component, component)
            else:
                torch.mul(self.down, self.down, out=self.channel_squared)
                self.channel_squared.addcmul_(self.right, self.right)
                if self.coupled:
                    torch.sum(self.channel_squared, dim=1, keepdim=True, out=self.squared)
            self.inner.mul_(self.length.clamp_(min=1.0).rsqrt_())
        # Primal proximal step: x <- (x + tau (y + weight div p)) / (1 + tau).
        torch.add(y, self.down, alpha=weight, out=data)
        data.sub_(self.down_prev, alpha=weight).add_(self.right, alpha=weight)
        data.sub_(self.right_prev, alpha=weight)
        theta = 1.0 / math.sqrt(1.0 + 2.0 * self.gamma * tau)
        # x_new = x + c (data - x), extrapolated = x_new + theta (x_new - x), so
        # extrapolated = x + (1 + theta) c (data - x): one pass each.
        blend = tau / (1.0 + tau)
        torch.lerp(x, data, (1.0 + theta) * blend, out=self.extrapolated)
        x.lerp_(data, blend)
        state["tau"], state["sigma"] = tau * theta, sigma / theta
        state["iterations"] += 1
        self.valid = True

    def dual_image(self, y: torch.Tensor) -> torch.Tensor:
        """``x(p) = y + weight * div p``, the primal image of the current dual ``p``."""
        data, weight = self.data, self.weight
        if not self.valid:  # e.g. after a checkpoint was loaded
            torch.add(y, self.down, alpha=weight, out=data)
            data.sub_(self.down_prev, alpha=weight).add_(self.right, alpha=weight)
            data.sub_(self.right_prev, alpha=weight)
            self.valid = True
        return data

    def gap(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``P(x)``, ``P(x) - D(p)`` and ``||x - x(p)||^2`` per image (float64); about an
        iteration's work."""
        x, weight = self.x, self.weight
        data = self.dual_image(y)
        spread = _squared_norms(torch.sub(x, data, out=self.difference))
        # D(p) = (||y||^2 - ||y + div p||^2) / 2
        dual_value = 0.5 * (_squared_norms(y) - _squared_norms(data))
        primal = 0.5 * _squared_norms(torch.sub(x, y, out=self.difference))
        down, right = torch.diff(x, dim=-2), torch.diff(x, dim=-1)
        if self.norm == "anisotropic":
            tv = _abs_sums(down) + _abs_sums(right)
        else:
            squared = self.difference
            torch.mul(down, down, out=squared[..., :-1, :])
            squared[..., -1, :] = 0
            squared[..., :, :-1].addcmul_(right, right)
            if self.coupled:
                squared = squared.sum(dim=1)
            tv = _sums(squared.sqrt_())
        primal = primal + weight * tv
        return primal, (primal - dual_value).clamp(min=0.0), spread

    def settle(self, y: torch.Tensor) -> None:
        """Replace ``x`` by the certified average ``(x + x(p)) / 2``; iterations may go on
        from there (the extrapolation restarts at the new ``x``)."""
        self.x.add_(self.dual_image(y)).mul_(0.5)
        self.extrapolated.copy_(self.x)


class ChambollePockTV(torch.optim.Optimizer):
    """Accelerated Chambolle-Pock (2011, Algorithm 2) for TV denoising; one iteration per step.

    The parameters are images ``x`` (``B x C x H x W``) that start at the noisy images
    (or anywhere); ``step(target=y)`` moves each ``x`` one primal-dual iteration towards
    the minimiser of ``1/2 ||x - y||^2 + weight * TV(x)``. No gradients are used.
    The dual variable, step sizes and extrapolated point live in the optimizer state,
    so a checkpoint resumes exactly.

    Args:
        params: the images to denoise (tensors or ``nn.Parameter``).
        weight: strength of the TV term (scikit-image's ``weight``).
        norm: ``isotropic`` or ``anisotropic`` TV.
        coupled_channels: vectorial TV (channels share one gradient length).
        tau: initial primal step; the dual step is ``1 / (8 tau)``.
        gamma: acceleration (strong convexity) parameter; 1 is the modulus of the data
            term; 0.85 (with tau 0.7) took the fewest iterations on photographs.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        weight: float = 0.1,
        norm: TVNorm = "isotropic",
        coupled_channels: bool = False,
        tau: float = DEFAULT_TAU,
        gamma: float = DEFAULT_GAMMA,
    ) -> None:
        if weight <= 0:
            raise InputError(f"weight must be positive, got {weight}")
        if norm not in ("isotropic", "anisotropic"):
            raise InputError(f"norm must be 'isotropic' or 'anisotropic', got {norm!r}")
        defaults = dict(
            weight=weight, norm=norm, coupled_channels=coupled_channels, tau=tau, gamma=gamma
        )
        super().__init__(params, defaults)
        self._workers: dict[torch.Tensor, _PrimalDual] = {}

    def _worker(self, x: torch.Tensor, group: dict[str, Any]) -> _PrimalDual:
        state = self.state[x]
        if "dual" not in state:
            state.update(_PrimalDual.new_state(x, group["tau"]))
        worker = self._workers.get(x)
        # Rebuild when the state tensors were replaced (loaded, moved to another device).
        if worker is None or worker.dual is not state["dual"] or worker.weight != group["weight"]:
            worker = _PrimalDual(
                x,
                state,
                float(group["weight"]),
                group["norm"],
                bool(group["coupled_channels"]),
                float(group["gamma"]),
            )
            self._workers[x] = worker
        return worker

    @torch.no_grad()
    def step(  # type: ignore[override]
        self, closure: Callable[[], Any] | None = None, target: torch.Tensor | None = None
    ) -> Any:
        """One primal-dual iteration of every image towards its denoised version.

        Args:
            closure: called first if given (the optimizer needs no gradients).
            target: the noisy images ``y``, same shape as the parameters.
        """
        result = None
        if closure is not None:
            with torch.enable_grad():
                result = closure()
        if target is None:
            raise ValueError("ChambollePockTV.step needs target=the noisy images")
        for group in self.param_groups:
            for x in group["params"]:
                if x.shape != target.shape:
                    raise ValueError(
                        f"target has shape {tuple(target.shape)} but the images being "
                        f"denoised have {tuple(x.shape)}"
                    )
                self._worker(x, group).iterate(target.to(x.dtype))
        return result

    @torch.no_grad()
    def duality_gap(self, target: torch.Tensor) -> torch.Tensor:
        """``P(x) - D(p)`` of each image after the last step: a ``B`` tensor (float64).

        By strong convexity, ``||x - x*||^2 <= 2 * gap``: the root mean square distance of
        ``x`` to the exact minimiser is at most ``sqrt(2 * gap / (C * H * W))``
        (:func:`gap_to_rms`). Costs about one iteration.

        Args:
            target: the noisy images ``y`` that :meth:`step` received.
        """
        return self.objective_and_gap(target)[1]

    @torch.no_grad()
    def objective_and_gap(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The objective ``P(x)`` of each image and its duality gap (both ``B``, float64).

        Args:
            target: the noisy images ``y`` that :meth:`step` received.
        """
        objective, gap, _ = self._certificates(target)
        return objective, gap

    @torch.no_grad()
    def certificate(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The objective ``P(x)`` of each image, and how close :meth:`settle` would bring it.

        Returns ``P(x)`` and the certified root mean square distance of the average
        ``(x + x(p)) / 2`` to the exact minimiser (:func:`averaged_rms`; both ``B``,
        float64). Costs about one iteration.

        Args:
            target: the noisy images ``y`` that :meth:`step` received.
        """
        objective, gap, spread = self._certificates(target)
        return objective, averaged_rms(gap, spread, target[0].numel())

    @torch.no_grad()
    def settle(self, target: torch.Tensor) -> None:
        """Replace each image by its certified average ``(x + x(p)) / 2`` (see
        :meth:`certificate`); later steps go on from there.

        Args:
            target: the noisy images ``y`` that :meth:`step` received.
        """
        for group, x in self._stepped_images():
            self._worker(x, group).settle(target.to(x.dtype))

    def _stepped_images(self) -> list[tuple[dict[str, Any], torch.Tensor]]:
        pairs = [(group, x) for group in self.param_groups for x in group["params"]]
        if any("dual" not in self.state[x] for _, x in pairs):
            raise RuntimeError("the duality gap needs at least one step() first")
        return pairs

    def _certificates(
        self, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        parts = [
            self._worker(x, group).gap(target.to(x.dtype)) for group, x in self._stepped_images()
        ]
        objective, gap, spread = zip(*parts, strict=True)
        return torch.cat(objective), torch.cat(gap), torch.cat(spread)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._workers = {}


# Sums for the duality gap: torch.sum's cascade summation is accurate in float32 (to
# about 1e-7 relative over a million pixels); linalg.vector_norm and dot are not.
def _sums(x: torch.Tensor) -> torch.Tensor:
    x = x.float() if x.element_size() < 4 else x
    return x.flatten(1).sum(dim=1).to(_accumulator(x))


def _abs_sums(x: torch.Tensor) -> torch.Tensor:
    return _sums(x.abs())


def _squared_norms(x: torch.Tensor) -> torch.Tensor:
    x = x.float() if x.element_size() < 4 else x
    return x.square().flatten(1).sum(dim=1).to(_accumulator(x))


def gap_to_rms(gap: torch.Tensor, pixels_per_image: int) -> torch.Tensor:
    """The certified root mean square distance to the exact solution, from a duality gap.

    Args:
        gap: duality gaps, as :meth:`ChambollePockTV.duality_gap` returns.
        pixels_per_image: ``C * H * W``.
    """
    return torch.sqrt(2.0 * gap / pixels_per_image)


def averaged_rms(gap: torch.Tensor, spread: torch.Tensor, pixels_per_image: int) -> torch.Tensor:
    """The certified root mean square distance of ``(x + x(p)) / 2`` to the exact solution.

    ``P(x) - P* >= ||x - x*||^2 / 2`` (the objective is 1-strongly convex) and
    ``D* - D(p) >= ||x(p) - x*||^2 / 2`` (the dual is 1-strongly concave in
    ``x(p) = y + weight div p``); adding them, with ``P* = D*``, and the parallelogram law give
    ``||(x + x(p)) / 2 - x*||^2 <= P(x) - D(p) - ||x - x(p)||^2 / 4``.

    Args:
        gap: duality gaps ``P(x) - D(p)``.
        spread: ``||x - x(p)||^2`` of each image.
        pixels_per_image: ``C * H * W``.
    """
    return torch.sqrt((gap - 0.25 * spread).clamp(min=0.0) / pixels_per_image)


def _iterations_to_tol(
    iteration: int, distance: float, last_check: tuple[int, float] | None, tol: float
) -> int:
    """How many more iterations the certified distance needs to reach ``tol``.

    The distance falls at least like ``1/n`` (the gap like ``1/n^2``), often faster: fit
    ``distance ~ n^-a`` through the last two checks (``a >= 1``) and extrapolate.
    """
    exponent = 1.0
    if last_check is not None and 0 < distance < last_check[1]:
        exponent = max(
            1.0, math.log(last_check[1] / distance) / math.log(iteration / last_check[0])
        )
    predicted = iteration * (distance / tol) ** (1.0 / exponent)
    return max(1, math.ceil(predicted - iteration - 1e-9))


def default_tol(weight: float) -> float:
    """The certified RMS tolerance used when none is given: ``weight * RELATIVE_TOL``.

    Args:
        weight: strength of the TV term.
    """
    return float(weight) * RELATIVE_TOL


@torch.no_grad()
def tv_denoise(
    image: torch.Tensor,
    weight: float = 0.1,
    norm: TVNorm = "isotropic",
    coupled_channels: bool = True,
    tol: float | None = None,
    max_iter: int = 500,
    check_every: int = 10,
) -> torch.Tensor:
    """TV-denoise a batch of images; stop when each is certified within ``tol`` of the optimum.

    Stopping rule: the duality gap of each image bounds the root mean square distance
    of the average ``(x + x(p)) / 2`` of the primal image and the dual's image to the exact
    minimiser (:func:`averaged_rms`); the run stops as soon as that bound is at most
    ``tol`` for every image (in practice the distance is then about half of it), or
    after ``max_iter`` iterations, and returns the averages. The gap is checked after
    ``check_every`` iterations and then where the rate seen so far predicts ``tol`` (at
    most ``check_every`` iterations later).

    Args:
        image: ``B x C x H x W`` noisy images (any float dtype, any device).
        weight: strength of the TV term (scikit-image's ``weight``).
        norm: ``isotropic`` or ``anisotropic`` TV.
        coupled_channels: vectorial TV (channels share one gradient length; the
            default); ``False`` treats each channel on its own, as scikit-image does.
        tol: certified root mean square distance to the exact solution, in image units;
            default ``weight / 16`` (:data:`RELATIVE_TOL`; 2/255, two 8-bit grey levels,
            at weight 0.125). The actual distance is typically 0.4-0.5 of the bound.
        max_iter: most iterations.
        check_every: most iterations between two duality-gap checks.

    Returns:
        The denoised images, same shape and dtype as ``image``.
    """
    _check_images(image)
    if weight <= 0:
        raise ValueError(f"weight must be positive, got {weight}")
    tol = default_tol(weight) if tol is None else tol
    if tol <= 0:
        raise ValueError(f"tol must be positive, got {tol}")
    x = image.detach().clone()
    state = _PrimalDual.new_state(x, DEFAULT_TAU)
    solver = _PrimalDual(x, state, weight, norm, coupled_channels, DEFAULT_GAMMA)
    pixels = x[0].numel()
    next_check, last_check = check_every, None
    for iteration in range(1, max_iter + 1):
        solver.iterate(image)
        if iteration == next_check or iteration == max_iter:
            _, gap, spread = solver.gap(image)
            distance = float(averaged_rms(gap, spread, pixels).max())
            if distance <= tol:
                break
            next_check = iteration + _iterations_to_tol(iteration, distance, last_check, tol)
            next_check = min(next_check, iteration + check_every)
            last_check = (iteration, distance)
    solver.settle(image)
    return x


#: ITU-R BT.601 RGB -> YCbCr (full range, as JPEG defines it; no chroma offset).
_RGB_TO_YCBCR = (
    (0.299, 0.587, 0.114),
    (-0.168736, -0.331264, 0.5),
    (0.5, -0.418688, -0.081312),
)


def _mix(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", matrix.to(image), image)


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    """JPEG's luma and chroma (BT.601 YCbCr, full range, chroma centred on 0) of
    ``B x 3 x H x W`` RGB images.

    Args:
        image: RGB images.
    """
    return _mix(torch.tensor(_RGB_TO_YCBCR, dtype=torch.float64), image)


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`rgb_to_ycbcr`.

    Args:
        image: ``B x 3 x H x W`` YCbCr images.
    """
    return _mix(torch.linalg.inv(torch.tensor(_RGB_TO_YCBCR, dtype=torch.float64)), image)


def tv_denoise_luma_chroma(
    image: torch.Tensor,
    luma_weight: float = 0.015,
    chroma_weight: float = 0.03,
    norm: TVNorm = "isotropic",
    coupled_channels: bool = True,
    max_iter: int = 500,
) -> torch.Tensor:
    """TV-denoise RGB images in JPEG's colour space: the luma at one weight, the two
    chroma channels at another.

    Camera noise after demosaicking and JPEG differs in luma and chroma (JPEG quantises
    and subsamples the chroma on its own), so one weight for R, G and B fits neither.
    The default weights are the best pair on the validation scenes of the PolyU
    benchmark (docs/benchmarks.md); noisier photographs want larger ones.

    Args:
        image: ``B x 3 x H x W`` noisy RGB images.
        luma_weight: strength of the TV term on the luma (Y).
        chroma_weight: strength of the TV term on the chroma (Cb, Cr).
        norm: ``isotropic`` or ``anisotropic`` TV.
        coupled_channels: the two chroma channels share one gradient length.
        max_iter: most iterations of each solve.
    """
    _check_images(image)
    if image.shape[1] != 3:
        raise InputError(
            f"luma/chroma TV needs RGB images (3 channels), got {image.shape[1]}; "
            "leave chroma_weight unset for other images"
        )
    ycbcr = rgb_to_ycbcr(image)
    luma = tv_denoise(ycbcr[:, :1], luma_weight, norm, max_iter=max_iter)
    chroma = tv_denoise(ycbcr[:, 1:], chroma_weight, norm, coupled_channels, max_iter=max_iter)
    return ycbcr_to_rgb(torch.cat([luma, chroma], 1))


class TVSmoothing(nn.Module):
    """:func:`tv_denoise` as a module: a classical denoiser to plug in where a module is
    expected (e.g. ``NoisyImageDataModule(pseudo_clean=...)``). No gradients flow.

    Args:
        weight: strength of the TV term (scikit-image's ``weight``); with
            ``chroma_weight``, that of the luma.
        norm: ``isotropic`` or ``anisotropic`` TV.
        coupled_channels: vectorial TV (channels share one gradient length; with
            ``chroma_weight``, the two chroma channels).
        chroma_weight: denoise RGB images in luma and chroma (BT.601 YCbCr, JPEG's space;
            :func:`tv_denoise_luma_chroma`), the chroma at this weight; unset: in the
            images' own channels.
    """

    def __init__(
        self,
        weight: float = 0.03,
        norm: TVNorm = "isotropic",
        coupled_channels: bool = True,
        chroma_weight: float | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("weight", weight), ("chroma_weight", chroma_weight)):
            if value is not None and value <= 0:
                raise InputError(f"TVSmoothing needs a positive {name}, got {value}")
        self.weight, self.norm, self.coupled_channels = float(weight), norm, coupled_channels
        self.chroma_weight = chroma_weight

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The TV-denoised ``images`` (``B x C x H x W``), clipped to [0, 1]."""
        if self.chroma_weight is None:
            denoised = tv_denoise(images, self.weight, self.norm, self.coupled_channels)
        else:
            denoised = tv_denoise_luma_chroma(
                images, self.weight, self.chroma_weight, self.norm, self.coupled_channels
            )
        return denoised.clamp(0, 1)
