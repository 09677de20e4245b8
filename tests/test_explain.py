"""The heat map (core/explain.py): the attention comes from the model's own forward pass,
the map sits on the model's crop of the picture, and nothing in the model changes."""

from __future__ import annotations

import numpy as np
import pytest

from nsfw_desk.core.explain import attention_maps, crop_box, explain, heat_colours, supports
from nsfw_desk.core.hub import ModelError
from nsfw_desk.synthetic import synthetic_photo


def test_attention_pass_reproduces_the_models_forward(loaded_model):
    import torch

    pictures = [synthetic_photo((200, 150), seed=s) for s in (1, 2)]
    x = torch.stack([loaded_model.preprocess(p)[0] for p in pictures])
    module = loaded_model.module
    with torch.inference_mode():
        maps, logits = attention_maps(module, x)
        expected = module(x)
    assert torch.allclose(logits, expected, atol=1e-5)
    tokens = module.patch_embed.num_patches + module.num_prefix_tokens
    assert len(maps) == len(module.blocks)
    assert maps[0].shape == (2, module.blocks[0].attn.num_heads, tokens, tokens)
    assert torch.allclose(maps[-1].sum(dim=-1), torch.ones(1), atol=1e-5)  # softmax rows


def test_rollout_map_covers_the_crop_and_leaves_the_model_alone(loaded_model):
    import torch

    module = loaded_model.module
    fused = [block.attn.fused_attn for block in module.blocks]
    before = {k: v.clone() for k, v in module.state_dict().items()}
    picture = synthetic_photo((300, 150), seed=3)
    heat = explain(loaded_model, picture)
    assert heat.values.shape == tuple(module.patch_embed.grid_size)
    assert heat.values.min() == 0.0 and heat.values.max() == 1.0
    # timm's eval transform keeps the centre of a 2:1 picture, a square of crop_pct of its
    # height.
    x0, y0, x1, y1 = heat.box
    assert heat.box == crop_box(300, 150, loaded_model.data_config)
    crop_pct = loaded_model.data_config["crop_pct"]
    assert (y1 - y0) == pytest.approx(crop_pct) and (x1 - x0) == pytest.approx(crop_pct / 2)
    assert x0 == pytest.approx(1 - x1) and y0 == pytest.approx(1 - y1)
    assert heat.label == "NSFW" and heat.model_id == loaded_model.model_id
    expected = loaded_model.predict(loaded_model.preprocess(picture)[0][None]).unsafe_scores[0]
    assert heat.score == pytest.approx(float(expected), abs=1e-5)
    assert "NSFW" in heat.describe() and "Grad-CAM" in heat.describe()
    assert [block.attn.fused_attn for block in module.blocks] == fused
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert not any(m._forward_hooks for m in module.modules())


def test_crop_box_follows_crop_pct():
    config = {"input_size": (3, 224, 224), "crop_pct": 0.875}
    # Shorter side to 256, then the centre 224: 224/256 of each side of a square picture.
    box = crop_box(100, 100, config)
    assert box == pytest.approx((0.0625, 0.0625, 0.9375, 0.9375))
    tall = crop_box(100, 400, {"input_size": (3, 384, 384), "crop_pct": 1.0})
    assert tall == pytest.approx((0.0, 0.375, 1.0, 0.625))


def test_heat_colours_are_transparent_where_cold():
    rgba = heat_colours(np.array([[0.0, 1.0]]))
    assert rgba[0, 0, 3] < rgba[0, 1, 3]
    assert rgba[0, 1, 0] == 255 and rgba[0, 0, 2] == 255  # hot red, cold blue


def test_a_model_without_attention_is_refused(loaded_model):
    class NotAViT:
        display_name = "sd-checker"
        module = None

    assert supports(loaded_model) and not supports(NotAViT())
    with pytest.raises(ModelError, match="not a ViT"):
        explain(NotAViT(), synthetic_photo((64, 64)))


def test_gradcam_matches_the_grad_cam_package(loaded_model):
    pytest.importorskip("pytorch_grad_cam")
    from nsfw_desk.core.explain import gradcam, gradcam_package

    x = loaded_model.preprocess(synthetic_photo((200, 160), seed=9))[0][None]
    ours, probs = gradcam(loaded_model.module, x, loaded_model.unsafe_indices)
    theirs, their_probs = gradcam_package(loaded_model.module, x, loaded_model.unsafe_indices)
    assert np.allclose(probs, their_probs, atol=1e-5)
    # The package scales to [0, 1] and resizes to the input with OpenCV: do the same.
    import cv2

    resized = cv2.resize(ours, theirs.shape[::-1])
    scaled = (resized - resized.min()) / (resized.max() - resized.min())
    assert np.abs(scaled - theirs).max() < 1e-3
    assert not any(m._forward_hooks for m in loaded_model.module.modules())


def test_rollout_is_the_class_tokens_row_of_the_full_product(loaded_model):
    import torch

    from nsfw_desk.core.explain import rollout

    x = loaded_model.preprocess(synthetic_photo((160, 160), seed=4))[0][None]
    module = loaded_model.module
    with torch.inference_mode():
        values, _ = rollout(module, x)
        maps, _ = attention_maps(module, x)
    eye = torch.eye(maps[0].shape[-1])
    joint = eye
    for attention in maps:
        a = 0.5 * attention[0].mean(dim=0) + 0.5 * eye
        joint = (a / a.sum(dim=-1, keepdim=True)) @ joint
    expected = joint[0, module.num_prefix_tokens :].reshape(values.shape).numpy()
    assert np.allclose(values, expected, atol=1e-6)
