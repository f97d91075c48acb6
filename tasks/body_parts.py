"""``BodyPartClassifier``: Kinect-style per-pixel body-part labelling of depth images.

Shotton et al. (CVPR 2011) label every pixel of a person in a depth image with one of 31
body parts, using a classifier trained only on rendered depth maps, and turn the parts
into 3-D joints by mean shift. This task trains the per-pixel classifier (background
pixels, label -1, are ignored), by gradient (an MLP or an FCN) or, as in the paper, as a
randomised decision forest grown from sampled pixels; it reports pixel accuracy, mean
per-class accuracy (the paper's metric), mean IoU and the left/right confusion rate per
domain, and, on validation and test, the joint average precision of the mean-shift
proposals (``val/joint_map``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from lightning_synth.adaptation import AdaptationInputs
from lightning_synth.batch import (
    DOMAIN,
    DOMAIN_NAMES,
    IGNORE_LABEL,
    IMAGE,
    INTRINSICS,
    JOINTS,
    LABEL,
    Batch,
    Stage,
)
from lightning_synth.callbacks import log_image
from lightning_synth.errors import InputError
from lightning_synth.metrics.joints import (
    JointAveragePrecision,
    joint_proposals,
    joint_visibility,
)
from lightning_synth.metrics.symmetry import LeftRightConfusion
from lightning_synth.nn.depth_features import DepthComparisonFeatures
from lightning_synth.nn.forest import DepthForest
from lightning_synth.nn.segmentation import DepthFCN, PixelClassifier
from lightning_synth.rendering.body import PART_NAMES, colorize_parts
from lightning_synth.tasks.base import Adaptation, StepOutput, SynthTask
from lightning_synth.tasks.classification import masked_cross_entropy

__all__ = ["BodyPartClassifier", "depth_readings", "part_map_grid"]


def part_map_grid(
    depth: torch.Tensor,
    labels: torch.Tensor,
    preds: torch.Tensor,
    domains: torch.Tensor,
    max_frames: int = 4,
    min_width: int = 160,
) -> torch.Tensor:
    """One row per frame: depth (near = bright), true parts, predicted parts; ``3 x H x W`` uint8.

    Parts use the fixed 31-colour :data:`~lightning_synth.rendering.body.PART_PALETTE`, so
    a colour means the same part in every picture; predictions are drawn on the pixels
    with a depth reading only.

    Args:
        depth: ``B x 1 x H x W`` metres, 0 = no reading.
        labels: ``B x H x W`` true parts, -1 for background or unknown.
        preds: ``B x H x W`` predicted parts.
        domains: ``B`` domain codes (written on each row).
        max_frames: at most this many rows.
        min_width: frames narrower than this are enlarged (nearest neighbour).
    """
    count = min(max_frames, depth.shape[0])
    d = depth[:count, 0].detach().float().cpu()
    foreground = d > 0
    far = torch.where(foreground, d, -torch.inf).flatten(1).amax(1)[:, None, None]
    near = torch.where(foreground, d, torch.inf).flatten(1).amin(1)[:, None, None]
    shade = 1 - 0.75 * (d - near) / (far - near).clamp_min(1e-3)
    grey = (torch.where(foreground, shade, 0.0) * 255).round().to(torch.uint8)
    tiles = [
        grey[..., None].expand(-1, -1, -1, 3),
        colorize_parts(labels[:count].detach().cpu()),
        colorize_parts(torch.where(foreground, preds[:count].detach().cpu(), IGNORE_LABEL)),
    ]
    gap = torch.full((count, d.shape[1], 2, 3), 255, dtype=torch.uint8)
    rows = torch.cat([tiles[0], gap, tiles[1], gap, tiles[2]], dim=2)  # B x H x W' x 3
    factor = max(1, -(-min_width // d.shape[2]))
    rows = rows.repeat_interleave(factor, 1).repeat_interleave(factor, 2)
    height, width = rows.shape[1:3]
    header, font = 12, ImageFont.load_default()
    canvas = Image.new("RGB", (width, header + count * (height + 2)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    column = (width - 4) // 3
    for index, title in enumerate(("depth", "true parts", "predicted parts")):
        draw.text((index * (column + 2) + 2, 0), title, fill=(0, 0, 0), font=font)
    for row in range(count):
        top = header + row * (height + 2)
        canvas.paste(Image.fromarray(rows[row].numpy()), (0, top))
        name = DOMAIN_NAMES.get(int(domains[row]), "?")
        draw.text((3, top + 1), name, fill=(255, 255, 0), font=font)
    return torch.from_numpy(np.array(canvas)).permute(2, 0, 1)


class BodyPartClassifier(SynthTask):
    """Label every depth pixel with one of 31 body parts; propose 3-D joints from the parts.

    Three backbones, chosen by ``backbone`` (or injected as ``feature_extractor`` and
    ``classifier``):

    * ``depth_features``: Shotton's depth-comparison features
      (:class:`~lightning_synth.nn.DepthComparisonFeatures`), then a per-pixel MLP
      (:class:`~lightning_synth.nn.PixelClassifier`) trained by gradient;
    * ``forest``: the same features, then the paper's randomised decision forest
      (:class:`~lightning_synth.nn.DepthForest`: ``forest_trees`` trees of depth up to
      ``forest_depth``), grown by scikit-learn on ``pixels_per_image`` random labelled
      person pixels of every training frame, and run as tensors on any device;
    * ``fcn``: a small encoder-decoder (:class:`~lightning_synth.nn.DepthFCN`), then the MLP.

    What ``fit`` does with a forest (any ``classifier`` with ``fit_forest`` and ``fitted``,
    as :class:`~lightning_synth.nn.DepthForest`): the training epoch samples pixels and
    keeps their features in memory (4 bytes x features x pixels x frames, on the CPU: 128
    features and 500 pixels take 256 kB a frame); there is no optimizer and no gradient
    step (Lightning's warnings that ``configure_optimizers`` and ``training_step``
    returned ``None`` are silenced). After the epoch's last batch, or the step at which
    ``max_steps``, ``max_time`` or a callback ends the fit, the forest is grown, in this
    process, before the validation that follows: every checkpoint chosen by validation
    holds the grown forest (a validation inside the epoch, ``val_check_interval < 1``,
    sees it before). The fit then stops: there is nothing left to train (a fitted forest
    also ends a resumed fit at its first step). The sampled pixels are not checkpointed:
    a run resumed from the middle of the epoch grows its forest from the frames after
    that point. Validation, test, predict, checkpoints, ``load_from_checkpoint``, mixed
    precision and any accelerator work as for the other backbones. Not available with a
    forest: training in several processes (DDP: each would grow its own forest on its
    share of the frames; fit on one device, then validate, test and predict on as many
    as you like) and ``adaptation`` (it needs a classifier trained by gradient).

    Logs ``{stage}/loss`` (for a forest, validation and test only: the negative
    log-likelihood of its class distributions), per domain ``{stage}/{domain}_acc`` (pixel
    accuracy), ``_class_acc`` (mean per-class accuracy), ``_iou`` (mean IoU) and, with
    the 31 parts, ``_lr_confusion`` (the fraction of pixels of a sided part predicted as
    its mirror part, :class:`~lightning_synth.metrics.symmetry.LeftRightConfusion`) over
    labelled pixels, ``val/joint_map`` and ``test/joint_map`` (joint average precision at
    ``joint_threshold`` metres over the first ``joint_frames`` frames with known joints of
    each process), and a picture of depth, true and predicted parts to TensorBoard. The
    best checkpoint is chosen by ``val/rendered_class_acc``, which needs no real label.

    Args:
        feature_extractor: depth ``B x 1 x H x W`` -> features ``B x D x H x W``; default
            set by ``backbone``.
        classifier: features -> ``B x num_classes x H x W`` scores; default a
            :class:`~lightning_synth.nn.PixelClassifier` with ``hidden`` layers, or for
            ``backbone: forest`` a :class:`~lightning_synth.nn.DepthForest`.
        adaptation: a domain-adaptation method, a list of them, or ``null``: per-pixel
            losses on the person's pixels (those with a depth reading), rendered and
            sensor frames alike; see :mod:`lightning_synth.adaptation`. With fixed
            features (depth comparisons whose offsets do not learn) the methods act on
            the classifier's last hidden layer, the first representation that can change.
        backbone: default networks: ``depth_features`` (depth-comparison features and an
            MLP), ``forest`` (the same features and a decision forest) or ``fcn``.
        num_classes: number of body parts.
        hidden: hidden layer widths of the default classifier.
        foreground_only: classify only pixels with a depth reading (much faster) when the
            classifier acts per pixel (``PixelClassifier``); the depth features are then
            computed on those pixels only too. Background logits are 0.
        lr: learning rate.
        weight_decay: weight decay.
        optimizer: ``adam``, ``adamw`` or ``sgd`` (momentum 0.9).
        scheduler: ``none``, ``cosine`` (over the whole run) or ``dann`` (the annealing of
            Ganin et al., ``lr / (1 + 10 p) ** 0.75``).
        joint_frames: frames per process and epoch whose joints are proposed and scored
            (0 turns the joint metric off; so does a ``num_classes`` other than 31).
        joint_threshold: largest distance in metres of a correct joint (the paper: 0.1).
        bandwidth: mean-shift kernel width in metres.
        probability_threshold: pixels vote for a joint only above this part probability.
        push_back: metres from the surface mode back to the joint, along the view ray.
        log_images: draw depth, true and predicted parts of a validation batch each epoch.
        pixels_per_image: pixels a forest is grown on, drawn at random among the labelled
            person pixels of each training frame (the paper: 2000).
        forest_trees: trees of the default forest (the paper: 3).
        forest_depth: largest depth of its trees (the paper: 20).
    """

    monitor: ClassVar[str] = "val/rendered_class_acc"
    mode: ClassVar[Literal["min", "max"]] = "max"

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        classifier: nn.Module | None = None,
        adaptation: Adaptation = None,
        backbone: Literal["depth_features", "fcn", "forest"] = "depth_features",
        num_classes: int = len(PART_NAMES),
        hidden: Sequence[int] = (128,),
        foreground_only: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        scheduler: Literal["none", "cosine", "dann"] = "none",
        joint_frames: int = 64,
        joint_threshold: float = 0.1,
        bandwidth: float = 0.065,
        probability_threshold: float = 0.14,
        push_back: float = 0.039,
        log_images: bool = True,
        pixels_per_image: int = 2000,
        forest_trees: int = 3,
        forest_depth: int = 20,
    ) -> None:
        if num_classes < 2:
            raise InputError(f"num_classes must be at least 2, got {num_classes}")
        if joint_frames < 0:
            raise InputError(f"joint_frames must be >= 0, got {joint_frames}")
        if min(pixels_per_image, forest_trees, forest_depth) < 1:
            raise InputError(
                "pixels_per_image, forest_trees and forest_depth must be positive, got "
                f"{pixels_per_image}, {forest_trees}, {forest_depth}"
            )
        super().__init__(
            networks={
                "feature_extractor": feature_extractor,
                "classifier": classifier,
                "adaptation": adaptation,
            }
        )

    # -- hooks of SynthTask -------------------------------------------------------------
    def configure_models(
        self,
        feature_extractor: nn.Module | None = None,
        classifier: nn.Module | None = None,
        adaptation: Adaptation = None,
    ) -> None:
        hparams = self.hparams
        if feature_extractor is None:
            if hparams.backbone == "fcn":
                feature_extractor = DepthFCN()
            else:
                feature_extractor = DepthComparisonFeatures()
        self.feature_extractor = feature_extractor
        channels = _channels(feature_extractor)
        if classifier is None and hparams.backbone == "forest":
            classifier = DepthForest(
                channels,
                hparams.num_classes,
                num_trees=hparams.forest_trees,
                max_depth=hparams.forest_depth,
            )
        elif classifier is None:
            classifier = PixelClassifier(channels, hparams.num_classes, hidden=hparams.hidden)
        self.classifier = classifier
        # Features and labels of the sampled pixels, on the CPU, until the forest is grown.
        self._forest_features: list[torch.Tensor] = []
        self._forest_labels: list[torch.Tensor] = []
        # Fixed features (depth comparisons with set offsets) cannot move towards the other
        # domain: the methods then act on the classifier's last hidden layer, which can.
        self._adapt_hidden = isinstance(self.classifier, PixelClassifier) and not any(
            p.requires_grad for p in self.feature_extractor.parameters()
        )
        width = self.classifier.embedding_width if self._adapt_hidden else channels
        self.configure_adaptation(adaptation, width, hparams.num_classes)
        if self.grows_forest and len(self.adaptation):
            raise InputError(
                "adaptation needs a classifier trained by gradient, and a forest is grown "
                "from sampled pixels: set adaptation: null, or backbone: depth_features or fcn"
            )

    def configure_metrics(self) -> None:
        k = self.hparams.num_classes
        # Predictions are class indices and labels come checked from the DataModule: skip
        # torchmetrics' per-update validation (a sort of every pixel, a quarter of a step).
        options = {"ignore_index": IGNORE_LABEL, "validate_args": False}
        metrics: dict[str, Any] = {
            "acc": MulticlassAccuracy(k, average="micro", **options),
            "class_acc": MulticlassAccuracy(k, average="macro", **options),
            "iou": MulticlassJaccardIndex(k, **options),
        }
        if k == len(PART_NAMES):  # the sides are those of Shotton's 31 parts
            metrics["lr_confusion"] = LeftRightConfusion(ignore_index=IGNORE_LABEL)
        self.add_domain_metrics(MetricCollection(metrics))
        threshold = self.hparams.joint_threshold
        self.joint_ap = nn.ModuleDict(
            {stage: JointAveragePrecision(threshold) for stage in ("val", "test")}
        )
        self._joint_frames_seen = {"val": 0, "test": 0}

    # -- a forest: grown from sampled pixels, not trained by gradient ----------------------
    @property
    def grows_forest(self) -> bool:
        """Whether the classifier is a forest grown by ``fit_forest`` (no gradient training)."""
        return callable(getattr(self.classifier, "fit_forest", None))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit" or not self.grows_forest:
            return
        if self.trainer.world_size > 1:
            raise InputError(
                f"a decision forest is grown in one process, not under DDP "
                f"({self.trainer.world_size} processes): fit with --trainer.devices=1 "
                "(validate, test and predict may use several)"
            )
        # Expected with a forest: no optimizer, and no loss from training_step (the filters
        # match these two messages of Lightning's only).
        for message in ("configure_optimizers", "training_step"):
            warnings.filterwarnings(
                "ignore", message=rf"`(LightningModule\.)?{message}` returned `None`"
            )

    def configure_optimizers(self) -> Any:
        """The base task's optimizer; ``None`` (no optimizer) for a forest."""
        if self.grows_forest:
            return None
        return super().configure_optimizers()

    def training_step(self, batch: Batch, batch_idx: int) -> StepOutput | None:
        if not self.grows_forest:
            return super().training_step(batch, batch_idx)
        if self.classifier.fitted:
            # Grown already (a resumed run): there is nothing left to train.
            self.trainer.should_stop = True
            return None
        with torch.no_grad():
            self._sample_pixels(batch)
        return None  # no loss, no backward, no optimizer step

    def _sample_pixels(self, batch: Batch) -> None:
        """Keep the features and labels of up to ``pixels_per_image`` random labelled
        person pixels of each frame of ``batch`` (on the CPU)."""
        depth = depth_readings(batch[IMAGE])
        labels = batch[LABEL].masked_fill(depth[:, 0] == 0, IGNORE_LABEL).flatten()
        pixels = (labels != IGNORE_LABEL).nonzero()[:, 0]
        frames = pixels // depth[0, 0].numel()
        # Random order within each frame: sort by frame + a uniform draw in [0, 1).
        pixels = pixels[torch.argsort(frames + torch.rand(len(pixels), device=pixels.device))]
        frames = pixels // depth[0, 0].numel()
        counts = torch.bincount(frames, minlength=len(depth))
        first = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(pixels), device=pixels.device) - first[frames]
        chosen = pixels[rank < self.hparams.pixels_per_image]
        extractor = self.feature_extractor
        if callable(getattr(extractor, "probe", None)):
            features = extractor.probe(depth[:, 0], chosen)
        else:
            maps = extractor(depth)
            features = maps.movedim(1, -1).reshape(-1, maps.shape[1]).index_select(0, chosen)
        self._forest_features.append(features.float().cpu())
        self._forest_labels.append(labels.index_select(0, chosen).cpu())

    def _grow_forest(self) -> None:
        """Grow the forest on the pixels sampled so far; end the fit."""
        features, labels = self._forest_features, self._forest_labels
        self._forest_features, self._forest_labels = [], []
        if not features or not sum(len(part) for part in labels):
            raise RuntimeError(
                "no labelled person pixel in the training frames: nothing to grow the forest on"
            )
        pixels, pixel_labels = _concatenate_emptying(features), _concatenate_emptying(labels)
        self.classifier.fit_forest(pixels, pixel_labels)
        self.trainer.should_stop = True

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        if not self.grows_forest or self.classifier.fitted:
            return
        trainer = self.trainer
        max_steps = trainer.max_steps
        last_step = max_steps >= 0 and trainer.global_step >= max_steps
        # Grow now rather than at the epoch's end: in Lightning 2 the epoch's validation
        # (and the checkpoint it chooses) runs before on_train_epoch_end.
        if trainer.is_last_batch or trainer.should_stop or last_step:
            self._grow_forest()

    def on_train_epoch_end(self) -> None:
        # Whatever ended the epoch early and unseen by on_train_batch_end.
        if self.grows_forest and not self.classifier.fitted and self._forest_features:
            self._grow_forest()

    def validation_step(self, batch: Batch, batch_idx: int) -> StepOutput:
        if self.grows_forest and self.trainer.sanity_checking:
            with warnings.catch_warnings():
                # Validation before training: the forest is not grown yet, as expected.
                warnings.filterwarnings("ignore", message="DepthForest is not fitted")
                return super().validation_step(batch, batch_idx)
        return super().validation_step(batch, batch_idx)

    # -- the network -----------------------------------------------------------------------
    def _sparse(self) -> bool:
        return bool(self.hparams.foreground_only and getattr(self.classifier, "pointwise", False))

    def scores(self, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Part logits of the pixels that get classified, and where they are.

        Returns ``(B x K x H x W logits, None)``, or with ``foreground_only`` (when the
        classifier acts per pixel) ``(N x K logits, N flat indices into B * H * W)`` of the
        foreground pixels only. Extractors that can (depth features) compute only those
        pixels' features too.

        Args:
            depth: ``B x 1 x H x W`` metres, 0 = no reading (NaN, infinite or negative
                values count as no reading).
        """
        scores, _, index = self._features_and_scores(depth_readings(depth))
        return scores, index

    def _scores(self, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        scores, _, index = self._features_and_scores(depth)
        return scores, index

    def _features_and_scores(
        self, depth: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Logits, the features they came from, and the flat pixel indices (``None``:
        dense ``B x D x H x W`` maps; else ``N x D`` features of the foreground pixels)."""
        if not self._sparse():
            features = self.feature_extractor(depth)
            if getattr(self, "_adapt_hidden", False) and len(self.adaptation):
                embedding = self.classifier.embed(features.movedim(1, -1))
                logits = self.classifier.classify(embedding).movedim(-1, 1)
                return logits, embedding.movedim(-1, 1), None
            return self.classifier(features), features, None
        if getattr(self.feature_extractor, "sparse", False):
            features, index = self.feature_extractor.foreground_features(depth)
        else:
            index = (depth.flatten() > 0).nonzero()[:, 0]
            maps = self.feature_extractor(depth)
            features = maps.movedim(1, -1).reshape(-1, maps.shape[1])[index]
        if getattr(self, "_adapt_hidden", False) and len(self.adaptation):
            embedding = self.classifier.embed(features)
            return self.classifier.classify(embedding), embedding, index
        return self.classifier(features), features, index

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        """``B x num_classes x H x W`` part logits of depth images ``B x 1 x H x W`` (metres)."""
        scores, index = self.scores(depth)
        return scores if index is None else _scatter(scores, index, depth.shape)

    @torch.no_grad()
    def predict_parts(self, depth: torch.Tensor) -> torch.Tensor:
        """``B x H x W`` most likely part of every pixel (part 0 where there is no depth
        reading and only the foreground is classified); the fast path for inference.

        Args:
            depth: ``B x 1 x H x W`` metres, 0 = no reading.
        """
        depth = depth_readings(depth)
        scores, index = self._scores(depth)
        if index is None:
            return scores.argmax(dim=1)
        batch, _, height, width = depth.shape
        parts = torch.zeros(batch * height * width, dtype=torch.long, device=depth.device)
        return parts.index_copy(0, index, scores.argmax(dim=1)).view(batch, height, width)

    def propose_joints(
        self, logits: torch.Tensor, depth: torch.Tensor, intrinsics: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint proposals ``B x J x 3`` (metres, camera frame) and confidences ``B x J``.

        Args:
            logits: ``B x K x H x W`` part logits.
            depth: ``B x 1 x H x W`` metres.
            intrinsics: ``B x 4``: ``fx, fy, cx, cy``.
        """
        hparams = self.hparams
        return joint_proposals(
            logits.float().softmax(dim=1),
            depth,
            intrinsics,
            bandwidth=hparams.bandwidth,
            threshold=hparams.probability_threshold,
            push_back=hparams.push_back,
        )

    # -- the step ------------------------------------------------------------------------------
    def shared_step(self, batch: Batch, stage: Stage) -> StepOutput:
        images, domains = depth_readings(batch[IMAGE]), batch[DOMAIN]
        # A pixel without a reading carries no depth to classify: its label does not count.
        labels = batch[LABEL].masked_fill(images[:, 0] == 0, IGNORE_LABEL)
        batch = {**batch, IMAGE: images, LABEL: labels}
        scores, features, index = self._features_and_scores(images)
        if index is None:
            loss = masked_cross_entropy(scores, labels)
            preds = scores.detach().argmax(dim=1)
            # Background (no reading) looks the same in both domains: only the person counts.
            inputs = AdaptationInputs(features, domains, scores, pixel_mask=images[:, 0] > 0)
        else:
            # Only foreground pixels were classified; background ones predict part 0.
            loss = masked_cross_entropy(scores, labels.flatten()[index])
            preds = torch.zeros_like(labels).flatten()
            preds = preds.index_copy(0, index, scores.detach().argmax(dim=1)).view_as(labels)
            pixel_domains = domains[index // labels[0].numel()]
            inputs = AdaptationInputs(features, pixel_domains, scores)
        if len(self.adaptation):
            adaptation_loss = self.adaptation_loss(stage, inputs)
            self.log(
                f"{stage}/label_loss",
                loss,
                batch_size=len(domains),
                on_step=stage == "train",
                on_epoch=stage != "train",
                sync_dist=stage != "train",
            )
            loss = loss + adaptation_loss
        self.log(
            f"{stage}/loss",
            loss,
            prog_bar=True,
            batch_size=len(domains),
            sync_dist=stage != "train",
        )
        self.log_domain_metrics(stage, preds, labels, domains)
        if stage != "train":
            self._update_joints(stage, scores.detach(), index, batch)
        return {"loss": loss, "preds": preds}

    def _with_joints(self, batch: Batch) -> bool:
        """Joints come from Shotton's 31 parts, and need the camera intrinsics."""
        return self.hparams.num_classes == len(PART_NAMES) and INTRINSICS in batch

    def _update_joints(
        self, stage: Stage, scores: torch.Tensor, index: torch.Tensor | None, batch: Batch
    ) -> None:
        room = self.hparams.joint_frames - self._joint_frames_seen[stage]
        if room <= 0 or not self._with_joints(batch) or JOINTS not in batch:
            return
        known = torch.isfinite(batch[JOINTS]).all(dim=-1).any(dim=-1)
        chosen = known.nonzero()[:room, 0]
        if not len(chosen):
            return
        self._joint_frames_seen[stage] += len(chosen)
        logits = scores if index is None else _scatter(scores, index, batch[IMAGE].shape)
        positions, confidence = self.propose_joints(
            logits[chosen], batch[IMAGE][chosen], batch[INTRINSICS][chosen]
        )
        labels = batch[LABEL][chosen]
        visible = joint_visibility(labels)
        # Frames without any label (hidden, or a real folder without labels): every known
        # joint counts as visible.
        visible |= ~(labels != IGNORE_LABEL).flatten(1).any(1, keepdim=True)
        self.joint_ap[stage].update(positions, confidence, batch[JOINTS][chosen], visible)

    def _log_joint_map(self, stage: Stage) -> None:
        metric = self.joint_ap[stage]
        value = metric.compute()  # syncs over processes; every process gets the same value
        if not bool(value.isnan()):  # so every process takes the same branch
            self.log(f"{stage}/joint_map", value, sync_dist=True)
        metric.reset()
        self._joint_frames_seen[stage] = 0

    def on_validation_epoch_start(self) -> None:
        self._joint_frames_seen["val"] = 0

    def on_test_epoch_start(self) -> None:
        self._joint_frames_seen["test"] = 0

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.hparams.joint_frames:
            self._log_joint_map("val")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        if self.hparams.joint_frames:
            self._log_joint_map("test")

    def on_validation_batch_end(
        self, outputs: Any, batch: Batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if batch_idx != 0 or not self.hparams.log_images or self.trainer.sanity_checking:
            return
        if not self.trainer.is_global_zero:
            return
        depth = depth_readings(batch[IMAGE])
        grid = part_map_grid(depth, batch[LABEL], outputs["preds"], batch[DOMAIN])
        log_image(self.loggers, "val/parts", grid, self.global_step)

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> Batch:
        batch = {**batch, IMAGE: depth_readings(batch[IMAGE])}
        scores, index = self._scores(batch[IMAGE])
        logits = scores if index is None else _scatter(scores, index, batch[IMAGE].shape)
        out = {"parts": logits.argmax(dim=1), LABEL: batch[LABEL], DOMAIN: batch[DOMAIN]}
        if self._with_joints(batch):
            out[JOINTS], out["joint_confidence"] = self.propose_joints(
                logits, batch[IMAGE], batch[INTRINSICS]
            )
        return out


def depth_readings(depth: torch.Tensor) -> torch.Tensor:
    """``depth`` with every value that is not a reading (NaN, infinite, negative) set to 0,
    the batch contract's "no reading", so that no NaN reaches a loss or a joint proposal.

    Args:
        depth: depth in metres.
    """
    return depth.nan_to_num(0.0, 0.0, 0.0).clamp_min(0.0)


def _concatenate_emptying(parts: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(parts)`` that empties ``parts`` as it fills the result: at most one copy
    of the sampled pixels plus one batch's part is held, not two copies (the sampled
    pixels can take gigabytes)."""
    result = parts[0].new_empty((sum(len(part) for part in parts), *parts[0].shape[1:]))
    end = len(result)
    while parts:
        part = parts.pop()
        result[end - len(part) : end] = part
        end -= len(part)
    return result


def _scatter(scores: torch.Tensor, index: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``B x K x H x W`` logits from the ``N x K`` logits of the pixels ``index`` (others 0)."""
    batch, _, height, width = shape
    logits = scores.new_zeros(batch * height * width, scores.shape[1])
    logits = logits.index_copy(0, index, scores)
    return logits.view(batch, height, width, -1).permute(0, 3, 1, 2)


def _channels(network: nn.Module) -> int:
    """Channels of ``network``'s output: its ``out_features``, else one dummy pass."""
    declared = getattr(network, "out_features", None)
    if isinstance(declared, int):
        return declared
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            probe = torch.zeros(1, 1, 32, 32)
            probe[..., 8:24, 12:20] = 2.5
            return int(network(probe).shape[1])
    finally:
        network.train(was_training)
