"""Where the platform and the state are: options, then environment, then reconcile.toml, then defaults."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

CONFIG_NAME = "reconcile.toml"
DEFAULT_PLATFORM = "sqlite:///.reconcile/platform.db"
DEFAULT_STATE = ".reconcile/state.json"


@dataclass(frozen=True)
class Settings:
    platform_url: str
    seed: str | None  # create the embedded platform from this seed when it is missing
    state_path: Path
    config_file: Path | None


def find_config(start: Path) -> Path | None:
    for d in (start, *start.parents):
        candidate = d / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None


def _anchor_url(url: str, base: Path) -> str:
    """A relative sqlite path in reconcile.toml is relative to that file."""
    if url.startswith("sqlite:///"):
        p = Path(url[len("sqlite:///"):])
        if not p.is_absolute():
            return "sqlite:///" + str(base / p)
    return url


def resolve(platform: str | None = None, state: str | None = None, cwd: Path | None = None) -> Settings:
    cwd = cwd or Path.cwd()
    cfg_file = find_config(cwd)
    cfg = _read(cfg_file) if cfg_file else {}
    base = cfg_file.parent if cfg_file else cwd
    pcfg = cfg.get("platform") or {}
    scfg = cfg.get("state") or {}
    if not isinstance(pcfg, dict) or not isinstance(scfg, dict):
        raise ConfigError(f"{cfg_file}: [platform] and [state] must be tables")
    seed: str | None = None
    url = platform or os.environ.get("RECONCILE_PLATFORM")
    if not url:
        if "url" in pcfg:
            url = _anchor_url(str(pcfg["url"]), base)
            if pcfg.get("seed"):
                seed = str(base / str(pcfg["seed"]))
        else:
            url = _anchor_url(DEFAULT_PLATFORM, cwd)
    state_path = state or os.environ.get("RECONCILE_STATE")
    if state_path:
        sp = Path(state_path)
    elif "path" in scfg:
        sp = base / str(scfg["path"])
    else:
        sp = cwd / DEFAULT_STATE
    return Settings(platform_url=url, seed=seed, state_path=sp, config_file=cfg_file)
