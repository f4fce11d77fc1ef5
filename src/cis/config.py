"""Settings: defaults < <data dir>/config.toml < CIS_* environment variables."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import msgspec

from .errors import InvalidInput


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Tunable settings of a node; every field can be set in config.toml or as CIS_<NAME>."""

    cache_capacity: int = 4096
    cache_ttl_s: float = 300.0
    cache_shards: int = 16
    readers: int = 4
    busy_timeout_ms: int = 10_000
    sqlite_cache_mb: int = 64
    wal_autocheckpoint_pages: int = 1000
    journal_size_limit_mb: int = 64
    embed_batch_size: int = 32
    embed_threads: int = 2
    queue_max_items: int = 4096
    queue_max_bytes: int = 16 * 1024 * 1024
    ann_threshold: int = 40_000  # measured: benchmarks/bench_ann_switch.py
    max_text_bytes: int = 65_536
    http_host: str = "127.0.0.1"
    http_port: int = 7676
    http_max_body_bytes: int = 1024 * 1024
    http_max_import_bytes: int = 64 * 1024 * 1024
    sync: bool = True  # false: `cis serve` neither listens for peers nor connects to them
    sync_host: str = "0.0.0.0"
    sync_port: int = 7677
    discovery: bool = True  # advertise the sync listener over mDNS and hear other nodes'


def default_data_dir() -> Path:
    """CIS_DATA_DIR if set, else ~/.cis."""
    env = os.environ.get("CIS_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cis"


def load_config(data_dir: Path) -> Config:
    """Read config.toml in the data dir (if any), then apply CIS_* overrides."""
    raw: dict[str, object] = {}
    path = data_dir / "config.toml"
    if path.exists():
        try:
            raw.update(tomllib.loads(path.read_text("utf-8")))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{path}: not valid TOML ({exc}); fix or remove the file") from exc
    for name in Config.__struct_fields__:
        value = os.environ.get(f"CIS_{name.upper()}")
        if value is not None:
            raw[name] = value
    try:
        return msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"bad setting in {path} or CIS_* environment: {exc}") from exc
