"""`nsfw-desk similar` and the embedding index behind it."""

from __future__ import annotations

import json

import numpy as np
from PIL import ImageFilter

from nsfw_desk.cli import main
from nsfw_desk.core.similar import EmbeddingIndex
from nsfw_desk.synthetic import synthetic_photo


def test_nearest_orders_by_cosine_and_leaves_out_the_query():
    rng = np.random.default_rng(0)
    base = rng.normal(size=64)
    vectors = np.stack(
        [
            base,
            base * 3 + rng.normal(0, 0.1, 64),
            -base,
            rng.normal(size=64),
            base + rng.normal(0, 1, 64),
        ]
    )
    index = EmbeddingIndex(
        ["q", "scaled", "opposite", "random", "noisy"], vectors.astype(np.float16)
    )
    found = index.nearest(index.vector("q"), top=3, exclude="q")
    assert [n.content_hash for n in found] == ["scaled", "noisy", "random"]
    assert found[0].similarity > 0.99
    assert index.nearest(index.vector("q"), top=10, exclude="q")[-1].content_hash == "opposite"
    assert index.nbytes == 5 * 64 + 64 * 4  # int8 codes, a float32 scale per dimension


def test_int8_similarities_stay_close_to_float32_with_an_outlier_dimension():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3000, 96)).astype(np.float32)
    vectors[:, 5] *= 10  # a ViT-like outlier dimension must not coarsen the others
    vectors[1] = vectors[0] + rng.normal(0, 0.05, 96)  # a near copy of the query
    index = EmbeddingIndex([f"{i}" for i in range(len(vectors))], vectors.astype(np.float16))
    exact = vectors.astype(np.float16).astype(np.float32)
    exact /= np.linalg.norm(exact, axis=1, keepdims=True)
    found = index.nearest(index.vector("0"), top=50, exclude="0")
    assert found[0].content_hash == "1"
    truth = exact[[int(n.content_hash) for n in found]] @ exact[0]
    assert np.abs(truth - [n.similarity for n in found]).max() < 0.01
    best = set(np.argsort(-(exact @ exact[0]))[1:51].tolist())
    assert len(best & {int(n.content_hash) for n in found}) >= 45


def test_similar_command(tmp_path, model_dir, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    original = synthetic_photo((320, 240), 1).filter(ImageFilter.GaussianBlur(1))
    original.save(folder / "a.png")
    original.save(folder / "a-copy.jpg", quality=80)
    for seed in (2, 3):
        synthetic_photo((320, 240), seed).save(folder / f"other{seed}.png")
    db = tmp_path / "lib.sqlite"
    assert main(["scan", str(folder), "--model", str(model_dir), "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["similar", str(folder / "a.png"), "--top", "2", "--json", "--db", str(db)]) == 0
    found = json.loads(capsys.readouterr().out)
    assert len(found) == 2 and found[0]["path"].endswith("a-copy.jpg")
    assert found[0]["similarity"] >= found[1]["similarity"]
    assert main(["similar", found[1]["hash"], "--db", str(db)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3

    stranger = tmp_path / "stranger.png"
    synthetic_photo((100, 100), 9).save(stranger)
    assert main(["similar", str(stranger), "--db", str(db)]) == 2
    assert "is not in the library" in capsys.readouterr().err
    assert main(["similar", "no-such-thing", "--db", str(db)]) == 2
    assert "neither a file nor a content hash" in capsys.readouterr().err


def test_a_similarity_is_a_cosine_even_after_int8_codes():
    """`similar` printed 1.0002 (int8 codes round a vector's similarity to itself above 1)."""
    from nsfw_desk.core.similar import EmbeddingIndex

    vectors = np.random.default_rng(1).normal(size=(300, 192)).astype(np.float32)
    index = EmbeddingIndex([f"h{i}" for i in range(300)], vectors)
    found = [n.similarity for i in range(300) for n in index.nearest(vectors[i], top=3)]
    assert max(found) == 1.0 and min(found) >= -1.0
