"""A head-only model shares its base model's stored embeddings (models.embeddings_of): its
rows scored from them hold no copy, and every reader of embeddings finds the base's."""

from __future__ import annotations

import numpy as np
import pytest

from nsfw_desk.core import store
from nsfw_desk.core.similar import EmbeddingIndex
from nsfw_desk.core.store import Library
from nsfw_desk.core.training.heads import HeadScorer, rescore_from_embeddings

WIDTH = 8
BASE = "org/base@1"
HEAD = "sha256:" + "aa" * 32
HEAD2 = "sha256:" + "bb" * 32


def _register(library: Library, model_id: str, embeddings_of: str | None = None) -> None:
    library.register_model(
        model_id,
        source=f"/models/{model_id[-4:]}",
        revision=None,
        architecture="test_vit",
        labels=["NSFW", "SFW"],
        unsafe_labels=["NSFW"],
        embeddings_of=embeddings_of,
    )


def _base_library(tmp_path, n: int = 12) -> tuple[Library, list[str], np.ndarray]:
    library = Library(tmp_path / "library.sqlite")
    _register(library, BASE)
    hashes = [f"{i:064x}" for i in range(n)]
    x = np.random.default_rng(0).normal(size=(n, WIDTH)).astype("<f2")
    probs = np.full(2, 0.5, "<f4").tobytes()
    library.record_model_scores(
        BASE, [(h, 0.5, probs, x[i].tobytes()) for i, h in enumerate(hashes)]
    )
    return library, hashes, x


def _scorer() -> HeadScorer:
    weight = np.random.default_rng(1).normal(size=(2, WIDTH)).astype(np.float32)
    return HeadScorer(weight, np.zeros(2, np.float32), [0])


def _stored(library: Library, model_id: str) -> dict[str, bytes | None]:
    rows = library.db.execute("SELECT hash, embedding FROM scores WHERE model_id = ?", (model_id,))
    return dict(rows)


def test_a_head_only_model_stores_no_copy_yet_every_reader_finds_the_base_embeddings(tmp_path):
    library, hashes, x = _base_library(tmp_path)
    _register(library, HEAD, embeddings_of=BASE)
    assert rescore_from_embeddings(library, BASE, HEAD, _scorer()) == len(hashes)

    assert set(_stored(library, HEAD).values()) == {None}  # scores, and no embedding copy
    expected = _scorer().unsafe(_scorer().probabilities(x.astype(np.float32)))
    scores = library.scores_for(HEAD, hashes)
    assert [scores[h] for h in hashes] == pytest.approx(expected.tolist(), abs=1e-6)

    assert library.embedding_sources(HEAD) == [HEAD, BASE]
    np.testing.assert_array_equal(library.embedding(hashes[3], HEAD), x[3])
    assert library.embedding("not-there", HEAD) is None
    got_hashes, matrix = library.embeddings(HEAD)
    assert got_hashes == sorted(hashes)
    np.testing.assert_array_equal(matrix, x[[hashes.index(h) for h in got_hashes]])
    assert dict(library.embedding_blobs(HEAD, hashes[:4])) == {
        h: x[i].tobytes() for i, h in enumerate(hashes[:4])
    }
    index = EmbeddingIndex.from_library(library, HEAD)
    assert index.nearest(index.vector(hashes[5]), top=1)[0].content_hash == hashes[5]

    # A second head on the first (its base is the head-only model) finds them too.
    _register(library, HEAD2, embeddings_of=HEAD)
    assert rescore_from_embeddings(library, HEAD, HEAD2, _scorer()) == len(hashes)
    assert set(_stored(library, HEAD2).values()) == {None}
    assert library.embedding_sources(HEAD2) == [HEAD2, HEAD, BASE]
    np.testing.assert_array_equal(library.embedding(hashes[7], HEAD2), x[7])
    assert library.notes()["models.embeddings_of"].startswith("the model whose stored")
    library.close()


def test_own_embeddings_come_first_and_links_never_make_a_cycle(tmp_path):
    library, hashes, x = _base_library(tmp_path)
    _register(library, HEAD, embeddings_of=BASE)
    # Content only the head-only model decoded (the base never saw it): its own embedding.
    own = np.arange(WIDTH, dtype="<f2")
    library.record_model_scores(HEAD, [("new", 0.2, b"\0" * 8, own.tobytes())])
    np.testing.assert_array_equal(library.embedding("new", HEAD), own)
    assert len(library.embedding_blobs(HEAD)) == len(hashes) + 1
    assert library.embedding("new", BASE) is None  # the base does not read the head's

    assert not library.share_embeddings(BASE, HEAD)  # would be a cycle
    assert not library.share_embeddings(HEAD, HEAD)
    assert not library.share_embeddings(HEAD, "org/other@2")  # already shares BASE's
    assert library.embedding_sources(BASE) == [BASE]
    library.close()


def test_a_model_that_cannot_share_gets_copies(tmp_path):
    """An unregistered model (e.g. a folder only compared) has no models row to link."""
    library, hashes, x = _base_library(tmp_path)
    assert rescore_from_embeddings(library, BASE, HEAD, _scorer()) == len(hashes)
    stored = _stored(library, HEAD)
    assert stored[hashes[2]] == x[2].tobytes()
    assert library.embedding_sources(HEAD) == [HEAD]
    library.close()


def test_a_library_from_before_shared_embeddings_migrates_with_its_rows(tmp_path):
    path = tmp_path / "v5.sqlite"
    db = store.sqlite_utils.Database(path)
    store.migrate(db, store.MIGRATIONS[:5])
    emb = np.arange(WIDTH, dtype="<f2").tobytes()
    db.execute(
        "INSERT INTO models (id, source, first_used) VALUES (?, 'x', '2026-01-01T00:00:00.000Z')",
        (HEAD,),
    )
    db.execute(
        "INSERT INTO scores (hash, model_id, unsafe, probabilities, embedding, scored_at) "
        "VALUES ('h1', ?, 0.25, ?, ?, '2026-01-01T00:00:00.000Z')",
        (HEAD, b"\0" * 8, emb),
    )
    db.conn.commit()
    db.close()
    with Library(path) as lib:
        assert lib.db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
        assert lib.integrity_check() == "ok"
        assert lib.embedding_sources(HEAD) == [HEAD]  # nothing shared until registered so
        assert lib.embedding("h1", HEAD).tobytes() == emb  # the old copy is still read
        assert lib.scores_for(HEAD, ["h1"]) == {"h1": 0.25}
        notes = lib.notes()
        assert "NULL when models.embeddings_of" in notes["scores.embedding"]
        assert "little-endian float16" in notes["scores.embedding"]
        assert lib.share_embeddings(HEAD, BASE)
        assert lib.embedding_sources(HEAD) == [HEAD, BASE]


@pytest.mark.parametrize("sqlite_version", [None, (3, 37, 2)])
def test_shared_scores_go_in_exactly_with_json_each_or_row_by_row(
    tmp_path, monkeypatch, sqlite_version
):
    """The bulk path (json_each) and the one for SQLite before 3.38 store the same rows."""
    if sqlite_version is not None:
        monkeypatch.setattr(store.sqlite3, "sqlite_version_info", sqlite_version)
    library, hashes, _ = _base_library(tmp_path)
    _register(library, HEAD, embeddings_of=BASE)
    rng = np.random.default_rng(5)
    probs = rng.random((len(hashes), 3)).astype(np.float32)
    unsafe = probs[:, 0].astype(np.float64) / 3
    unsafe[0] = 1.0
    assert library.record_shared_scores(HEAD, hashes, unsafe, probs) == len(hashes)
    assert library.scores_for(HEAD, hashes) == dict(zip(hashes, unsafe.tolist(), strict=True))
    for n in (0, 5):
        np.testing.assert_array_equal(library.probabilities(hashes[n], HEAD), probs[n])
    assert set(_stored(library, HEAD).values()) == {None}
    assert library.record_shared_scores(HEAD, [], np.zeros(0), np.zeros((0, 3))) == 0
    library.close()
