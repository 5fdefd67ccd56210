"""Where the platform and the state are: options, then environment, then reconcile.toml, then defaults."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reconciler.errors import ConfigError
from reconciler.policy import Policy
from reconciler.policy import parse as parse_policy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

CONFIG_NAME = "reconcile.toml"
DEFAULT_PLATFORM = "sqlite:///.reconcile/platform.db"
DEFAULT_STATE = ".reconcile/state.json"
Source = Literal["option", "environment", "config", "default"]


@dataclass(frozen=True)
class Settings:
    platform_url: str  # as given; a provider anchors what it needs to (sqlite: a relative path)
    state: str  # a file path or a postgresql:// URL
    platform_options: Mapping[str, Any] = field(default_factory=dict)  # for the provider: [platform] + config_dir
    config_file: Path | None = None
    state_source: Source = "option"
    policy: Policy | None = None  # reconcile.toml [policy]: checked by plan and apply


def find_config(start: Path) -> Path | None:
    for d in (start, *start.parents):
        candidate = d / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None


def _table(cfg: Mapping[str, Any], name: str, cfg_file: Path | None) -> dict[str, Any]:
    t = cfg.get(name) or {}
    if not isinstance(t, dict):
        raise ConfigError(f"{cfg_file}: [{name}] must be a table")
    return t


def resolve(platform: str | None = None, state: str | None = None, cwd: Path | None = None) -> Settings:
    cwd = cwd or Path.cwd()
    cfg_file = find_config(cwd)
    cfg = read_toml(cfg_file) if cfg_file else {}
    base = cfg_file.parent if cfg_file else cwd
    pcfg = _table(cfg, "platform", cfg_file)
    scfg = _table(cfg, "state", cfg_file)
    options: dict[str, Any] = {}
    url = platform or os.environ.get("RECONCILE_PLATFORM")
    if not url:
        if "url" in pcfg:
            # The [platform] table belongs to its URL (a seed for it, say): a URL given otherwise drops it.
            url = str(pcfg["url"])
            options = {k: v for k, v in pcfg.items() if k != "url"}
            options["config_dir"] = str(base)
        else:
            url, options = DEFAULT_PLATFORM, {"config_dir": str(cwd)}
    if "url" in scfg and "path" in scfg:
        raise ConfigError(f"{cfg_file}: [state] takes `url` or `path`, not both")
    source: Source
    where = state or os.environ.get("RECONCILE_STATE")
    if state:
        source = "option"
    elif where:
        source = "environment"
    elif "url" in scfg:
        where, source = str(scfg["url"]), "config"
    elif "path" in scfg:
        where, source = str(base / str(scfg["path"])), "config"
    else:
        where, source = str(cwd / DEFAULT_STATE), "default"
    assert where is not None
    return Settings(platform_url=url, state=where, platform_options=options, config_file=cfg_file,
                    state_source=source, policy=policy_of(cfg, cfg_file))


def policy_of(cfg: Mapping[str, Any], cfg_file: Path | None) -> Policy | None:
    """The [policy] table (contract section 12); an unknown key or a bad value is a ConfigError."""
    if "policy" not in cfg:
        return None
    return parse_policy(cfg["policy"], str(cfg_file))
