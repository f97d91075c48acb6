"""``StyleTransfer``: neural style transfer (Gatys et al., 2016), the pixels as parameters.

The image is optimised so that its deep features (``conv4_2``) match the content
image and the Gram matrices of its features (``conv1_1`` ... ``conv5_1``) match the
style image(s), optionally with a total-variation term. The feature network is
injectable: torchvision's VGG19 with ImageNet weights (default), a local weights file,
or any ``nn.Module`` returning ``{name: activation}`` (see ``NamedFeatures``).

* ``fit`` optimises (L-BFGS by default, one iteration per step), logs ``train/loss``,
  ``train/content``, ``train/style`` (and ``train/tv``) and progress images, and
  writes the images to ``<run directory>/results``.
* ``test`` reports the losses of the result held by the task (a checkpoint's).
* ``predict`` returns the result images (``image``) and writes them to
  ``<run directory>/predictions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from lightning_synth.batch import IMAGE, NAME, STYLE, Batch
from lightning_synth.errors import InputError
from lightning_synth.nn.style_losses import content_loss, gram_matrix, style_loss
from lightning_synth.nn.total_variation import total_variation
from lightning_synth.nn.vgg import CONTENT_LAYERS, STYLE_LAYERS, VGGFeatures
from lightning_synth.tasks.image_optimization import ImageOptimizationTask

__all__ = ["StyleTransfer"]

_FEATURES_PREFIX = "feature_network."
#: Checkpoint entry naming the frozen networks whose weights the file leaves out.
_LEFT_OUT_KEY = "weights_left_out"


class StyleTransfer(ImageOptimizationTask):
    """Paint the content images in the style of the style images.

    Losses are relative squared errors (see :mod:`lightning_synth.nn.style_losses`), so
    the weights mean the same for any feature network and image size; the total is
    ``content_weight * content + style_weight * style + tv_weight * tv`` per image.

    Args:
        feature_network: images in [0, 1] -> ``{layer name: activation}``; default
            ``VGGFeatures(weights="imagenet")`` over the needed layers (a clear error
            offline without the weights file; ``VGGFeatures(weights="random")`` or a
            local file are the alternatives).
        content_layers: layers whose activations the content loss compares.
        style_layers: layers whose Gram matrices the style loss compares.
        style_layer_weights: one weight per style layer (equal by default).
        content_weight: weight of the content loss.
        style_weight: weight of the style loss (the trade-off; larger: more style).
        tv_weight: weight of a total-variation term (mean absolute gradient), 0 for none.
        style_blend: weight of each style image when several are given (equal default).
        style_weight_sweep: optimise one output per value of ``style_weight`` (all in
            one batch), to see the style/content trade-off; overrides ``style_weight``.
        init: start from the ``content`` image or from uniform ``noise``.
        optimizer: ``lbfgs`` (Gatys et al.; needs full precision) or ``adam``.
        lr: learning rate (default 1 for ``lbfgs``, 0.02 for ``adam``).
        iterations_per_step: L-BFGS iterations per training step (its ``max_iter``; the
            PyTorch tutorial's loop uses 20); more than 1 spreads the Trainer's own
            per-step work (hooks, logging) over several iterations, which shows on a GPU
            where an iteration takes milliseconds. ``max_steps`` counts training steps.
            Adam takes one iteration per step.
        log_images_every_n_steps: progress images to TensorBoard (0: only the result).
        bit_depth: bits per channel of the PNG files written (8 or 16).
    """

    monitor: ClassVar[str] = "train/loss"

    def __init__(
        self,
        feature_network: nn.Module | None = None,
        content_layers: list[str] | None = None,
        style_layers: list[str] | None = None,
        style_layer_weights: list[float] | None = None,
        content_weight: float = 1.0,
        style_weight: float = 100.0,
        tv_weight: float = 0.0,
        style_blend: list[float] | None = None,
        style_weight_sweep: list[float] | None = None,
        init: Literal["content", "noise"] = "content",
        optimizer: Literal["lbfgs", "adam"] = "lbfgs",
        lr: float | None = None,
        iterations_per_step: int = 1,
        log_images_every_n_steps: int = 50,
        bit_depth: Literal[8, 16] = 8,
    ) -> None:
        if iterations_per_step < 1:
            raise InputError(f"iterations_per_step must be at least 1, got {iterations_per_step}")
        if iterations_per_step > 1 and optimizer != "lbfgs":
            raise InputError(
                f"iterations_per_step={iterations_per_step} is L-BFGS's max_iter; with "
                f"optimizer={optimizer!r} each training step is one iteration: raise "
                f"max_steps instead"
            )
        self.content_layers = list(content_layers or CONTENT_LAYERS)
        self.style_layers = list(style_layers or STYLE_LAYERS)
        if style_layer_weights is not None and len(style_layer_weights) != len(self.style_layers):
            raise InputError(
                f"{len(style_layer_weights)} style_layer_weights for {len(self.style_layers)} layers"
            )
        if style_weight_sweep is not None and not style_weight_sweep:
            raise InputError("style_weight_sweep needs at least one value")
        super().__init__(networks={"feature_network": feature_network})
        self._targets: dict[str, Any] | None = None

    def configure_models(self, feature_network: nn.Module | None = None) -> None:
        super().configure_models()
        if feature_network is None:
            layers = sorted({*self.content_layers, *self.style_layers})
            feature_network = VGGFeatures(weights="imagenet", layers=layers)
        feature_network.requires_grad_(False)
        self.feature_network = feature_network

    # -- the outputs ---------------------------------------------------------------------------
    @property
    def style_weights(self) -> list[float]:
        """The style weight of each output of one content image."""
        sweep = self.hparams.style_weight_sweep
        return [float(w) for w in sweep] if sweep else [float(self.hparams.style_weight)]

    def initial_pixels(self, batch: Batch) -> torch.Tensor:
        content = batch[IMAGE].float().repeat_interleave(len(self.style_weights), dim=0)
        if self.hparams.init == "noise":
            return torch.rand_like(content)
        return content.clone()

    def pixel_shape(self, batch: Batch) -> torch.Size:
        count, *rest = batch[IMAGE].shape
        return torch.Size([count * len(self.style_weights), *rest])

    def result_names(self, batch: Batch) -> list[str]:
        names = self._content_names(batch)
        if self.hparams.style_weight_sweep is None:
            return names
        return [f"{name}_style{weight:g}" for name in names for weight in self.style_weights]

    def _content_names(self, batch: Batch) -> list[str]:
        count = batch[IMAGE].shape[0]
        names = batch.get(NAME)
        if isinstance(names, (list, tuple)) and len(names) == count:
            return [str(name) for name in names]
        return [f"image{index:03d}" for index in range(count)]

    # -- the losses ----------------------------------------------------------------------------
    def features(self, images: torch.Tensor) -> Mapping[str, torch.Tensor]:
        """The feature network's activations, checked to hold the layers the losses need."""
        found = self.feature_network(images)
        if not isinstance(found, Mapping):
            raise TypeError(
                f"the feature network must return a dict of named activations, got "
                f"{type(found).__name__}; wrap a plain network in NamedFeatures"
            )
        missing = [k for k in (*self.content_layers, *self.style_layers) if k not in found]
        if missing:
            raise KeyError(f"the feature network returned {sorted(found)} but not {missing}")
        return found

    @torch.no_grad()
    def targets(self, batch: Batch) -> dict[str, Any]:
        """Content activations (one per output) and blended style Gram matrices."""
        if STYLE not in batch:
            raise KeyError(f"StyleTransfer needs style images under {STYLE!r} in the batch")
        content = self.features(batch[IMAGE].to(self.pixels.dtype))
        repeats = len(self.style_weights)
        styles = self.features(batch[STYLE].to(self.pixels.dtype))
        count = batch[STYLE].shape[0]
        blend = self.hparams.style_blend or [1.0] * count
        if len(blend) != count:
            raise ValueError(f"{len(blend)} style_blend weights for {count} style images")
        blend_weights = torch.tensor(blend, dtype=torch.float32, device=self.pixels.device)
        blend_weights = (blend_weights / blend_weights.sum()).view(-1, 1, 1)
        return {
            "content": {
                k: content[k].detach().repeat_interleave(repeats, 0) for k in self.content_layers
            },
            "grams": {
                k: (gram_matrix(styles[k].detach()) * blend_weights).sum(0)
                for k in self.style_layers
            },
            # Made once: a tensor built from a list every step is a blocking host-to-device
            # copy on a GPU, which stalls the queue of kernels.
            "style_weights": torch.tensor(
                self.style_weights, dtype=torch.float32, device=self.pixels.device
            ).repeat(batch[IMAGE].shape[0]),
        }

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self._targets is None or not self.training:
            targets = self.targets(batch)
            if self.training:  # the training batch is the same every step
                self._targets = targets
        else:
            targets = self._targets
        hparams = self.hparams
        x = self.pixels
        found = self.features(x)
        content = content_loss(found, targets["content"], self.content_layers)
        style = style_loss(found, targets["grams"], self.style_layers, hparams.style_layer_weights)
        loss = hparams.content_weight * content + targets["style_weights"].to(style.dtype) * style
        terms = {"content": content, "style": style}
        if hparams.tv_weight > 0:
            tv = total_variation(x.float(), smoothing=1e-3) / x[0].numel()
            loss = loss + hparams.tv_weight * tv
            terms["tv"] = tv
        return {"loss": loss, **terms}

    # -- fit / test / predict ------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self._targets = None

    def on_train_start(self) -> None:
        batch = self.first_batch
        self.log_grid("train/content", batch[IMAGE], step=0)
        if STYLE in batch:
            self.log_grid("train/style", batch[STYLE], step=0)

    def _feature_weights_left_out(self) -> bool:
        # A VGG built from ImageNet or a weights file is rebuilt identically when the task is
        # constructed from its hyper-parameters, so checkpoints need not carry its ~80 MB.
        network = self.feature_network
        return isinstance(network, VGGFeatures) and network.rebuilt_from_weights

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._feature_weights_left_out():
            state = checkpoint["state_dict"]
            for key in [key for key in state if key.startswith(_FEATURES_PREFIX)]:
                del state[key]
            checkpoint[_LEFT_OUT_KEY] = {"feature_network": self.feature_network.weights}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        left_out = checkpoint.get(_LEFT_OUT_KEY)
        if not left_out:
            return
        if not isinstance(self.feature_network, VGGFeatures):
            raise ValueError(
                f"this checkpoint's feature network is VGG19 with weights "
                f"{left_out['feature_network']!r}, not stored in the file; build the task "
                f"with VGGFeatures(weights={left_out['feature_network']!r}) to load it"
            )
        own = self.feature_network.state_dict()
        checkpoint["state_dict"].update(
            {_FEATURES_PREFIX + key: value for key, value in own.items()}
        )

    def summary(self) -> str:
        line = super().summary()
        if self.hparams.style_weight_sweep:
            line += f"; one output per style weight {self.style_weights}"
        return line

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        self._check_shape(batch)
        images = self.current_images()
        root = self.run_dir()  # on every process: under DDP this is a collective call
        if self.trainer.is_global_zero:  # every process holds the same images
            self.write_results(images, self.result_names(batch), "predictions", root)
        return {IMAGE: images}
