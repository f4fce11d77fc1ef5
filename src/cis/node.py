"""Node: opens a data directory and wires storage, indexing and the memory service."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

from .access.limits import Access
from .access.tokens import TokenService
from .cache import CacheStats, ShardedCache
from .clock import Clock
from .config import Config, default_data_dir, load_config
from .dag.skill import WorkflowSkill
from .errors import KeyMismatch
from .index.batch import BatchIndexer
from .index.embed import Embedder, MiniLMEmbedder
from .index.vectors import VectorIndex
from .memory import upgrade
from .memory.service import MemoryService
from .model import NodeInfo, Token
from .net.network import Network
from .net.peers import Peers
from .skills.registry import SkillRegistry
from .store import files
from .store.crypto import resolve_key
from .store.files import DB_FILE
from .store.schema import SCHEMA_VERSION
from .store.snapshot import SnapshotFile
from .store.sqlite import Database, scalar
from .yielding import share_interpreter

if TYPE_CHECKING:  # imported when first used: a CLI call that reads memory skips them
    from .dag.service import DagService
    from .net.service import SyncService

SNAPSHOT_FILE = "vectors.snap"
_FROM_ENV: Any = object()


class NodeStatus(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: str
    db_path: str
    db_bytes: int
    schema_version: int
    cipher: str
    memories: int
    pending_embeddings: int
    vectors: int
    index: str
    model: str
    embedded: int
    reused: int
    cache: CacheStats


class Node:
    """One CIS node: a data directory holding an encrypted database and its key."""

    def __init__(self, data_dir: Path, config: Config, db: Database, memory: MemoryService):
        self.data_dir = data_dir
        self.config = config
        self.db = db
        self.memory = memory
        self.identity = memory.writer.identity
        self.peers = Peers(db)
        self.network = Network(db, memory)
        self.tokens = TokenService(db)
        self.skills = SkillRegistry(data_dir, memory)
        self.skills.runners["dag"] = WorkflowSkill(lambda: self.dags)

    @cached_property
    def sync(self) -> SyncService:
        """Sync with peers (the WebSocket listener, discovery and sessions)."""
        from .net.service import SyncService

        return SyncService(self.identity, self.memory, self.peers, self.network, self.data_dir)

    @cached_property
    def dags(self) -> DagService:
        """Workflows: start, run, resume and follow DAG runs."""
        from .dag.service import DagService

        return DagService(self.db, self.memory, self.data_dir, self.skills)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        passphrase: str | None = _FROM_ENV,
        embedder: Embedder | None = None,
        config: Config | None = None,
        background: bool = True,
        clock: Clock | None = None,
    ) -> Node:
        """Open the node in `path` (default: CIS_DATA_DIR or ~/.cis), creating it if asked.

        The key comes from `passphrase` (default: CIS_PASSPHRASE) or the node's key file.
        With `background` (the default) memories are embedded on a background thread as
        they arrive, and the interpreter's switch interval goes down to 1 ms so that no
        thread waits long beside them (cis.yielding); without it (short-lived CLI calls)
        only flush() embeds, and what is left stays queued in the database for the next
        opener. `clock` orders this node's changes (tests give one with a wall clock of
        their own).
        """
        data_dir = Path(path).expanduser() if path is not None else default_data_dir()
        if passphrase is _FROM_ENV:
            passphrase = os.environ.get("CIS_PASSPHRASE")
        config = config or load_config(data_dir)
        if create and not (data_dir / DB_FILE).exists():
            files.create(data_dir, passphrase, config)
        files.check_existing(data_dir)
        key = resolve_key(data_dir, passphrase=passphrase, create=False)
        try:
            db = Database(data_dir / DB_FILE, key, config)
        except KeyMismatch as exc:
            raise files.refused(data_dir, key, exc) from exc
        files.record_key(data_dir, key)
        embedder = embedder or MiniLMEmbedder(config.embed_threads, config.embed_batch_size)
        cache: ShardedCache[Any] = ShardedCache(
            config.cache_capacity, config.cache_ttl_s, config.cache_shards
        )
        indexer = BatchIndexer(
            db,
            embedder,
            batch_size=config.embed_batch_size,
            max_items=config.queue_max_items,
            max_bytes=config.queue_max_bytes,
            background=background,
        )
        index = VectorIndex(embedder.dim, config.ann_threshold, build=background)
        if background:
            share_interpreter()  # its threads run beside the caller's (see yielding)
        snapshot = SnapshotFile(data_dir / SNAPSHOT_FILE, key, embedder.model_id)
        clock = clock or Clock()
        try:
            me = upgrade.identity(db, clock)
        except BaseException:
            db.close()
            raise
        memory = MemoryService(db, config, embedder, index, cache, indexer, me, clock, snapshot)
        node = cls(data_dir, config, db, memory)
        node._start_indexing()
        return node

    def _start_indexing(self) -> None:
        """Re-embed after a model change; resume embeddings left by an earlier process."""
        model = self.memory.embedder.model_id
        with self.db.read() as conn:
            stored = scalar(conn, "SELECT value FROM meta WHERE name = 'model'")
            waiting = scalar(conn, "SELECT 1 FROM embed_queue LIMIT 1")
        self.memory.indexer.release_dead_claims()
        if stored != model and self.memory.reindex():
            return  # reindex queued the work and woke the indexer
        if waiting:
            self.memory.indexer.notify()

    def access(self, token: Token | None = None) -> Access:
        """The memory API as a caller holding `token` may use it (no limits without one)."""
        return Access(self.memory, token, lambda: self.dags, self.skills, self.status)

    def info(self) -> NodeInfo:
        """This node's identity as its peers know it."""
        return NodeInfo(did=self.identity.did)

    def status(self) -> NodeStatus:
        memory = self.memory
        memory.fresh.refresh()
        with self.db.read() as conn:
            vectors = scalar(conn, "SELECT count(*) FROM memory_vectors")
            cipher = scalar(conn, "PRAGMA cipher")
        db_bytes = sum(
            p.stat().st_size for p in (self.db.path, Path(f"{self.db.path}-wal")) if p.exists()
        )
        return NodeStatus(
            data_dir=str(self.data_dir),
            db_path=str(self.db.path),
            db_bytes=db_bytes,
            schema_version=SCHEMA_VERSION,
            cipher=str(cipher),
            memories=memory.count(),
            pending_embeddings=memory.pending(),
            vectors=int(vectors),
            index="hnsw" if memory.index.uses_ann else "exact",
            model=memory.embedder.model_id,
            embedded=memory.indexer.embedded,
            reused=memory.indexer.reused,
            cache=memory.cache.stats(),
        )

    def close(self, *, flush: bool = False) -> None:
        """Close the node; with `flush`, wait for pending embeddings first."""
        if flush:
            self.memory.flush()
        if "sync" in self.__dict__:  # started
            self.sync.close()
        self.memory.indexer.close()
        self.memory.searcher.close()
        self.tokens.close()
        self.skills.close()
        # vectors not yet in the HNSW graph stay out of the snapshot (the next opener
        # takes them from the log or the rows); a snapshot being written is waited for
        self.memory.fresh.persist_if_stale()
        self.db.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
