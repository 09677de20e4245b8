"""A tiny Stable Diffusion Safety Checker in the real repository's layout, and diffusers'
rule written out again (the reference the backend is checked against).

The folder has what CompVis/stable-diffusion-safety-checker has: config.json (a CLIPConfig
naming StableDiffusionSafetyChecker), preprocessor_config.json (CLIP) and model.safetensors
with the real key names (`vision_model.vision_model.…`, `visual_projection.weight`,
`concept_embeds[_weights]`, `special_care_embeds[_weights]`): 17 concepts and 3 special-care
slots as in the original, a tiny tower (64 px, width 32) and a 16-dimensional projection.
The thresholds are set from the images the test will scan, so that special care fires on
some of them and its 0.01 adjustment decides at least one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SIZE = 64
PROJECTION = 16


def _tiny_config():
    from transformers import CLIPConfig

    config = CLIPConfig(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=SIZE,
            patch_size=16,
        ),
        text_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4
        ),
        projection_dim=PROJECTION,
    )
    config.architectures = ["StableDiffusionSafetyChecker"]
    return config


def reference_cosines(folder: Path, images) -> tuple[np.ndarray, np.ndarray, dict]:
    """(special cos (N,3), concept cos (N,17), the weights) computed from the folder's files
    with transformers directly: the checker's forward pass as diffusers writes it."""
    import safetensors.torch
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    config = json.loads((folder / "config.json").read_text())
    state = safetensors.torch.load_file(str(folder / "model.safetensors"))
    tower = CLIPVisionModel(CLIPVisionConfig.from_dict(config["vision_config"]))
    own = set(tower.state_dict())
    prefix = "vision_model." if any(k.startswith("vision_model.") for k in own) else ""
    tower.load_state_dict(
        {
            prefix + k.removeprefix("vision_model.vision_model."): v.float()
            for k, v in state.items()
            if k.startswith("vision_model.vision_model.")
        }
    )
    tower.eval()
    processor = CLIPImageProcessor.from_pretrained(str(folder))
    pixels = processor(images=list(images), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        pooled = tower(pixel_values=pixels)[1]
        embeds = pooled @ state["visual_projection.weight"].float().t()

        def cosine(a, b):
            return torch.mm(torch.nn.functional.normalize(a), torch.nn.functional.normalize(b).t())

        special = cosine(embeds, state["special_care_embeds"].float()).float().numpy()
        concept = cosine(embeds, state["concept_embeds"].float()).float().numpy()
    return special, concept, state


def reference_rule(special_cos, concept_cos, state) -> list[dict]:
    """diffusers' StableDiffusionSafetyChecker.forward loop, scalar by scalar."""
    results = []
    for i in range(special_cos.shape[0]):
        result = {"special_scores": {}, "special_care": [], "concept_scores": {}, "bad": []}
        adjustment = 0.0
        for k in range(special_cos.shape[1]):
            cos = special_cos[i][k]
            threshold = state["special_care_embeds_weights"][k].item()
            result["special_scores"][k] = round(cos - threshold + adjustment, 3)
            if result["special_scores"][k] > 0:
                result["special_care"].append(k)
                adjustment = 0.01
        for j in range(concept_cos.shape[1]):
            cos = concept_cos[i][j]
            threshold = state["concept_embeds_weights"][j].item()
            result["concept_scores"][j] = round(cos - threshold + adjustment, 3)
            if result["concept_scores"][j] > 0:
                result["bad"].append(j)
        result["adjustment"] = adjustment
        results.append(result)
    return results


def save_tiny_checker(folder: Path, images, *, seed: int = 0) -> tuple[Path, int]:
    """Write the checker into `folder`, its thresholds calibrated on `images` (≥ 4); return
    the folder and the index of the image whose flag the special-care adjustment decides."""
    import safetensors.torch
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionModel

    torch.manual_seed(seed)
    config = _tiny_config()
    tower = CLIPVisionModel(config.vision_config)
    state = {
        "vision_model.vision_model." + k.removeprefix("vision_model."): v.contiguous()
        for k, v in tower.state_dict().items()
        if not k.endswith("position_ids")
    }
    hidden = config.vision_config.hidden_size
    state["visual_projection.weight"] = torch.randn(PROJECTION, hidden) / hidden**0.5
    state["concept_embeds"] = torch.randn(17, PROJECTION)
    state["special_care_embeds"] = torch.randn(3, PROJECTION)
    state["concept_embeds_weights"] = torch.full((17,), 0.2)
    state["special_care_embeds_weights"] = torch.full((3,), 0.2)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2, default=str))
    CLIPImageProcessor(
        size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE}
    ).save_pretrained(str(folder))
    safetensors.torch.save_file(state, str(folder / "model.safetensors"))

    special, concept, _ = reference_cosines(folder, images)
    # The image `flip` is the one most like some concept `j` (the concept where it leads the
    # others by most); its margin there is set to -0.004, which the 0.01 adjustment turns
    # into a flag. Special care fires on it (and on the images more like that slot than it).
    ordered = np.sort(concept, axis=0)
    j = int(np.argmax(ordered[-1] - ordered[-2]))
    flip = int(np.argmax(concept[:, j]))
    k = int(np.argmin((special > special[flip]).sum(axis=0)))
    s_thr = special.max(axis=0) + 0.05
    s_thr[k] = special[flip, k] - 0.002
    # Another concept fires on about a fifth of the images; the rest never.
    other = (j + 1) % concept.shape[1]
    c_thr = concept.max(axis=0) + 0.05
    c_thr[other] = max(np.quantile(concept[:, other], 0.8), concept[flip, other] + 0.02)
    c_thr[j] = concept[flip, j] + 0.004
    state["special_care_embeds_weights"] = torch.tensor(s_thr, dtype=torch.float32)
    state["concept_embeds_weights"] = torch.tensor(c_thr, dtype=torch.float32)
    safetensors.torch.save_file(state, str(folder / "model.safetensors"))
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle: must never be opened")
    return folder, flip
