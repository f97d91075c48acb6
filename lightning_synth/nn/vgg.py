"""Feature networks that return named activations: VGG19 for style transfer, or any network.

:class:`VGGFeatures` is torchvision's VGG19 convolutional part, cut after the deepest
layer asked for, returning a dict of post-ReLU activations named ``conv1_1`` ...
``conv5_4`` (``conv4_2`` is the ReLU output of the second convolution of block 4).
Its weights come from torchvision's ``IMAGENET1K_V1`` file (the torch hub cache, or a
download), from a local file, or are random when asked for by name; a missing file
never silently becomes random weights.

:class:`NamedFeatures` turns any ``nn.Module`` into such an extractor (forward hooks
on chosen submodules), e.g. the backbone of a classifier trained with this project.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lightning_synth.errors import InputError

__all__ = [
    "VGG19_LAYERS",
    "CONTENT_LAYERS",
    "STYLE_LAYERS",
    "IMAGENET_WEIGHTS_FILE",
    "WeightsUnavailableError",
    "VGGFeatures",
    "NamedFeatures",
    "load_state_dict_file",
]

#: torchvision's VGG19 ("E") configuration: channels per convolution, ``M`` for pooling.
_VGG19_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
    512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip


def _layer_names() -> tuple[str, ...]:
    names, block, index = [], 1, 0
    for item in _VGG19_CONFIG:
        if item == "M":
            block, index = block + 1, 0
        else:
            index += 1
            names.append(f"conv{block}_{index}")
    return tuple(names)


#: The 16 activations :class:`VGGFeatures` can return, in network order.
VGG19_LAYERS: tuple[str, ...] = _layer_names()
#: Gatys et al. (2016): content from ``conv4_2``, style from the first layer of each block.
CONTENT_LAYERS: tuple[str, ...] = ("conv4_2",)
STYLE_LAYERS: tuple[str, ...] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
#: File name of torchvision's ``VGG19_Weights.IMAGENET1K_V1`` in ``$TORCH_HOME/hub/checkpoints``.
IMAGENET_WEIGHTS_FILE = "vgg19-dcbb9e9d.pth"

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailableError(RuntimeError):
    """The requested pretrained weights are neither on disk nor downloadable."""


def load_state_dict_file(path: str | Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Read a state dict from ``path``: a plain state dict or a Lightning checkpoint.

    Args:
        path: ``.pth``/``.pt``/``.ckpt`` file (tensors only; nothing is unpickled).
        prefix: keep only the keys that start with it, with it removed (e.g.
            ``"backbone."`` for the backbone of an ``ImageClassifier`` checkpoint).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"weights file {str(file)!r} does not exist")
    loaded = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]  # a Lightning checkpoint
    if not isinstance(loaded, Mapping):
        raise InputError(f"{str(file)!r} holds a {type(loaded).__name__}, not a state dict")
    state = {k[len(prefix) :]: v for k, v in loaded.items() if k.startswith(prefix)}
    if not state:
        raise InputError(f"{str(file)!r} has no keys starting with {prefix!r}")
    return state


def _imagenet_state_dict() -> dict[str, torch.Tensor]:
    from torchvision.models import VGG19_Weights

    weights = VGG19_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_WEIGHTS_FILE
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError) as error:  # URLError and socket errors are OSErrors
        raise WeightsUnavailableError(
            f"VGG19 ImageNet weights are not available: they are not in the torch hub "
            f"cache ({cached}) and downloading {weights.url} failed "
            f"({type(error).__name__}: {error}). Either "
            f"download that file on a machine that is online and put it at {cached} "
            f"(the torch hub cache; set TORCH_HOME to move it), or pass a local file "
            f"(weights: /path/to/{IMAGENET_WEIGHTS_FILE}), or, to run with untrained "
            f"features on purpose (textures, not a style transfer), weights: random. "
            f"On the command line: --model.init_args.feature_network.init_args.weights=..."
        ) from error


class VGGFeatures(nn.Module):
    """VGG19's convolutional part as ``images in [0, 1] -> {layer name: activation}``.

    The network stops after the deepest requested layer, its weights are frozen (it has
    no dropout or batch norm, so train and eval mode agree), and ImageNet normalisation
    is applied inside, so inputs are plain ``[0, 1]`` images; gray images are repeated
    to RGB.

    Args:
        weights: ``imagenet`` (torchvision's ``IMAGENET1K_V1``, read from the torch hub
            cache or downloaded; a clear error when neither works), ``random`` (untrained,
            only when asked for), or the path of a state dict of torchvision's ``vgg19``
            (or of its ``features``).
        layers: names to return, from :data:`VGG19_LAYERS`; default the Gatys et al.
            content and style layers.
        pooling: ``max`` (as trained) or ``avg`` (Gatys et al.'s choice for synthesis).
    """

    def __init__(
        self,
        weights: str = "imagenet",
        layers: list[str] | None = None,
        pooling: Literal["max", "avg"] = "max",
    ) -> None:
        super().__init__()
        wanted = list(layers) if layers is not None else sorted(
            {*CONTENT_LAYERS, *STYLE_LAYERS}, key=VGG19_LAYERS.index
        )  # fmt: skip
        unknown = [name for name in wanted if name not in VGG19_LAYERS]
        if unknown or not wanted:
            raise InputError(f"unknown VGG19 layer(s) {unknown}; choose from {VGG19_LAYERS}")
        if pooling not in ("max", "avg"):
            raise InputError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        self.layers = sorted(set(wanted), key=VGG19_LAYERS.index)
        self.features, self._outputs = self._build(self.layers[-1], pooling)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), False)
        self.weights = weights
        self._load(weights)
        self.requires_grad_(False)

    @property
    def rebuilt_from_weights(self) -> bool:
        """Whether constructing it again loads the same values (not so for ``random``)."""
        return self.weights != "random"

    @staticmethod
    def _build(last: str, pooling: str) -> tuple[nn.Sequential, dict[int, str]]:
        """Modules numbered as in torchvision's ``vgg19().features`` (so state dicts fit)."""
        modules: list[nn.Module] = []
        outputs: dict[int, str] = {}
        channels, names = 3, iter(VGG19_LAYERS)
        for item in _VGG19_CONFIG:
            if item == "M":
                pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
                modules.append(pool(kernel_size=2, stride=2))
                continue
            modules += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=True)]
            channels = int(item)
            name = next(names)
            outputs[len(modules) - 1] = name
            if name == last:
                break
        return nn.Sequential(*modules), outputs

    def _load(self, weights: str) -> None:
        if weights == "random":
            for module in self.features.modules():  # torchvision's initialisation
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(module.bias)
            return
        if weights == "imagenet":
            state = _imagenet_state_dict()
        else:
            state = load_state_dict_file(weights)
        if any(key.startswith("features.") for key in state):
            state = {
                k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")
            }
        own = self.features.state_dict()
        missing = [key for key in own if key not in state]
        if missing:
            raise InputError(
                f"weights {weights!r} lack {missing[:4]}...: expected a state dict of "
                f"torchvision's vgg19 (keys 'features.0.weight', ...) or of its features"
            )
        try:
            self.features.load_state_dict({key: state[key] for key in own})
        except RuntimeError as error:
            raise InputError(f"weights {weights!r} do not fit VGG19: {error}") from error

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        found: dict[str, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            name = self._outputs.get(index)
            if name is not None and name in self.layers:
                found[name] = x
        return found


class NamedFeatures(nn.Module):
    """Any network as a feature extractor: the outputs of chosen submodules, by name.

    The network runs whole; forward hooks keep the outputs of the submodules named in
    ``layers``. It is frozen and kept in eval mode (batch-norm statistics stay put).

    Args:
        network: the network, e.g. ``DigitConvNet`` or a torchvision model.
        layers: output name -> submodule path as in ``network.named_modules()``,
            e.g. ``{"block1": "conv.5", "block2": "conv.12"}``.
        weights: optional file loaded into ``network`` first: a state dict or a
            Lightning checkpoint (see ``prefix``).
        prefix: with ``weights``, keep only the keys with this prefix, removed (e.g.
            ``backbone.`` for the backbone of an ``ImageClassifier`` checkpoint).
    """

    def __init__(
        self,
        network: nn.Module,
        layers: dict[str, str],
        weights: str | None = None,
        prefix: str = "",
    ) -> None:
        super().__init__()
        if not layers:
            raise InputError("layers must name at least one submodule")
        self.network = network
        if weights is not None:
            network.load_state_dict(load_state_dict_file(weights, prefix))
        submodules = dict(network.named_modules())
        unknown = [path for path in layers.values() if path not in submodules]
        if unknown:
            known = [name for name in submodules if name][:20]
            raise InputError(f"no submodule(s) {unknown} in the network; some it has: {known}")
        self.layers = dict(layers)
        self._found: dict[str, torch.Tensor] = {}
        for name, path in self.layers.items():
            submodules[path].register_forward_hook(functools.partial(self._keep, name))
        self.requires_grad_(False)
        self.eval()

    def _keep(self, name: str, module: nn.Module, args: Any, output: torch.Tensor) -> None:
        self._found[name] = output

    def train(self, mode: bool = True) -> NamedFeatures:
        return super().train(False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self._found = {}
        self.network(images)
        found, self._found = self._found, {}
        return {name: found[name] for name in self.layers}
