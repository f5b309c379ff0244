"""Encoder registry, the MobileNetV2 definition, the shipped weights and the CLIP adapter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slime_def.data.encoders import ENCODERS
from slime_def.errors import SpecError

STAMPS = Path("/usr/share/tuxpaint/stamps")
ZEBRA = STAMPS / "animals/mammals/equines/zebra.png"
# ImageNet-1k class indices in torchvision's order.
IMAGENET_ZEBRA = 340


def test_registry_lists_encoders():
    assert {"mobilenet_v2", "efficientnet_lite0", "minilm", "hf_clip"} <= set(ENCODERS.names())


def test_registry_unknown_encoder_lists_known():
    with pytest.raises(SpecError, match="mobilenet_v2"):
        ENCODERS.get("mobilenet_v3")


def _zebra_image():
    from slime_def.data.images import load_image

    if not ZEBRA.is_file():
        pytest.skip(f"{ZEBRA} not found; install the Debian package tuxpaint-stamps-default")
    return load_image(ZEBRA)


@pytest.mark.build
def test_mobilenet_v2_loads_checkpoint_strictly():
    import torch

    from slime_def.data.encoders import build_mobilenet_v2, mobilenet_v2_checkpoint

    state = torch.load(mobilenet_v2_checkpoint(), map_location="cpu", weights_only=True)
    model = build_mobilenet_v2()
    assert set(model.state_dict()) == set(state)
    model.load_state_dict(state, strict=True)
    for name, tensor in model.state_dict().items():
        assert tensor.shape == state[name].shape, name


@pytest.mark.build
def test_mobilenet_v2_predicts_zebra_on_stamp():
    import torch

    from slime_def.data.encoders import imagenet_tensor, load_mobilenet_v2

    model = load_mobilenet_v2()
    with torch.inference_mode():
        logits = model(imagenet_tensor([_zebra_image()]))
    assert int(logits.argmax()) == IMAGENET_ZEBRA


@pytest.mark.build
def test_efficientnet_lite0_predicts_zebra_on_stamp():
    import torch

    from slime_def.data.encoders import LITE_MEAN, LITE_STD, imagenet_tensor, load_efficientnet_lite0

    model = load_efficientnet_lite0()
    with torch.inference_mode():
        logits = model(imagenet_tensor([_zebra_image()], mean=LITE_MEAN, std=LITE_STD))
    assert int(logits.argmax()) == IMAGENET_ZEBRA


@pytest.mark.build
@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_image_encoder_shape_and_repeatability(name):
    from PIL import Image

    encoder = ENCODERS.create(name)
    images = [_zebra_image(), Image.new("RGB", (300, 200), (30, 120, 200))]
    first = encoder.encode(images)
    second = encoder.encode(images)
    assert encoder.info.modality == "image"
    assert first.shape == (2, encoder.info.dim) == (2, 1280)
    assert first.dtype == np.float32
    assert np.array_equal(first, second)
    assert np.all(first >= 0)  # pooled after ReLU6


@pytest.mark.build
def test_minilm_ranks_paraphrase_closest():
    encoder = ENCODERS.create("minilm")
    vectors = encoder.encode(["A zebra.", "A striped horse-like animal.", "A garlic bulb."])
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert vectors.shape == (3, 384)
    assert encoder.info.dim == 384
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


@pytest.mark.build
def test_imagenet_tensor_resize_and_crop():
    from PIL import Image

    from slime_def.data.encoders import IMAGENET_MEAN, IMAGENET_STD, imagenet_tensor

    # A white image with a black left half: after the resize to 384x256 the black
    # part ends at column 192, and the centre crop starts at column 80, so crop
    # columns up to about 111 are black and the rest white.
    image = Image.new("RGB", (600, 400), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 300, 400))
    batch = imagenet_tensor([image]).numpy()
    assert batch.shape == (1, 3, 224, 224)
    black = (0.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    white = (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert batch[0, 0, 100, 10] == pytest.approx(black, abs=1e-5)
    assert batch[0, 0, 100, 200] == pytest.approx(white, abs=1e-5)


def _save_tiny_clip(folder: Path) -> None:
    """Save a randomly initialised CLIP with 16-dim projections and a letter tokenizer."""
    import torch
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor,
                              CLIPTextConfig, CLIPTokenizer, CLIPVisionConfig)

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    text = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=32,
                          bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                              num_attention_heads=4, image_size=32, patch_size=8)
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


@pytest.mark.build
def test_hf_clip_tiny_model_offline(tmp_path):
    pytest.importorskip("transformers")
    from PIL import Image

    _save_tiny_clip(tmp_path)
    image_encoder = ENCODERS.create(f"hf_clip(model={str(tmp_path)!r}, modality='image', local_files_only=True)")
    text_encoder = ENCODERS.create(f"hf_clip(model={str(tmp_path)!r}, modality='text', local_files_only=True)")
    images = [Image.new("RGB", (50, 40), (200, 10, 10)), Image.new("RGB", (40, 40), (0, 0, 255))]

    image_vectors = image_encoder.encode(images)
    text_vectors = text_encoder.encode(["a cat", "a dog on a mat"])

    assert image_encoder.info.dim == text_encoder.info.dim == 16
    assert image_vectors.shape == (2, 16)
    assert text_vectors.shape == (2, 16)
    assert image_vectors.dtype == text_vectors.dtype == np.float32
    assert "32x32" in image_encoder.info.preprocessing
    assert not np.allclose(image_vectors[0], image_vectors[1])


@pytest.mark.build
def test_hf_clip_missing_model_raises(tmp_path):
    pytest.importorskip("transformers")
    from slime_def.errors import SlimeDefError

    with pytest.raises(SlimeDefError, match="could not load CLIP model"):
        ENCODERS.create(f"hf_clip(model={str(tmp_path / 'absent')!r}, local_files_only=True)")


def test_hf_clip_rejects_unknown_modality():
    from slime_def.errors import SlimeDefError

    with pytest.raises(SlimeDefError, match="modality"):
        ENCODERS.create("hf_clip(modality='audio')")
