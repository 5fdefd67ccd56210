"""config: option > environment > reconcile.toml (searched upward, paths relative to it) > defaults."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import MOVES, SEED, run_main

from reconciler import config
from reconciler.cli import cli
from reconciler.config import Settings, find_config, resolve
from reconciler.errors import ConfigError
from reconciler.platforms import sqlite


def url_of(s: Settings) -> str:
    """The embedded platform's URL as the provider anchors it."""
    return sqlite.anchor(s.platform_url, s.platform_options)

TOML = """\
[platform]
url = "sqlite:///.reconcile/platform.db"
seed = "examples/platform.yaml"

[state]
path = ".reconcile/state.json"
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp/repo/reconcile.toml and a working directory two levels below it."""
    repo = tmp_path / "repo"
    (repo / "moves" / "team").mkdir(parents=True)
    (repo / "reconcile.toml").write_text(TOML)
    return repo


def no_config_above(p: Path) -> None:
    found = find_config(p)
    if found is not None:
        pytest.skip(f"a stray {found} above the test directory")


def test_defaults_without_anything(tmp_path: Path) -> None:
    no_config_above(tmp_path)
    s = resolve(cwd=tmp_path)
    assert s == Settings(platform_url="sqlite:///.reconcile/platform.db", state=str(tmp_path / ".reconcile/state.json"),
                         platform_options={"config_dir": str(tmp_path)}, config_file=None, state_source="default")
    assert url_of(s) == f"sqlite:///{tmp_path}/.reconcile/platform.db"


def test_toml_is_found_upward_and_its_paths_are_relative_to_it(tree: Path) -> None:
    s = resolve(cwd=tree / "moves" / "team")
    assert s == Settings(platform_url="sqlite:///.reconcile/platform.db", state=str(tree / ".reconcile/state.json"),
                         platform_options={"seed": "examples/platform.yaml", "config_dir": str(tree)},
                         config_file=tree / "reconcile.toml", state_source="config")
    assert url_of(s) == f"sqlite:///{tree}/.reconcile/platform.db"


def test_the_nearest_toml_wins(tree: Path) -> None:
    inner = tree / "moves"
    (inner / "reconcile.toml").write_text('[platform]\nurl = "sqlite:///inner.db"\n')
    s = resolve(cwd=inner / "team")
    assert s.config_file == inner / "reconcile.toml"
    assert url_of(s) == f"sqlite:///{inner}/inner.db"
    assert "seed" not in s.platform_options
    assert s.state == str(inner / "team" / ".reconcile" / "state.json")  # not set there: the default


def test_absolute_paths_in_toml_stay(tree: Path, tmp_path: Path) -> None:
    (tree / "reconcile.toml").write_text(f'[platform]\nurl = "sqlite:///{tmp_path}/abs.db"\n'
                                         f'[state]\npath = "{tmp_path}/abs.json"\n')
    s = resolve(cwd=tree)
    assert url_of(s) == f"sqlite:///{tmp_path}/abs.db"
    assert s.state == str(tmp_path / "abs.json")


def test_environment_beats_toml_and_drops_its_seed(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILE_PLATFORM", "sqlite:///env/platform.db")
    monkeypatch.setenv("RECONCILE_STATE", "env/state.json")
    s = resolve(cwd=tree)
    assert s.platform_url == "sqlite:///env/platform.db"
    assert s.platform_options == {}  # the seed belongs to the toml's URL only
    assert (s.state, s.state_source) == ("env/state.json", "environment")
    assert s.config_file == tree / "reconcile.toml"


def test_environment_for_one_setting_leaves_the_other_to_toml(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILE_STATE", "/elsewhere/state.json")
    s = resolve(cwd=tree)
    assert url_of(s) == f"sqlite:///{tree}/.reconcile/platform.db"
    assert s.platform_options["seed"] == "examples/platform.yaml"
    assert s.state == "/elsewhere/state.json"


def test_options_beat_environment(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILE_PLATFORM", "sqlite:///env.db")
    monkeypatch.setenv("RECONCILE_STATE", "env.json")
    s = resolve("sqlite:///opt.db", "opt.json", cwd=tree)
    assert (s.platform_url, s.platform_options, s.state) == ("sqlite:///opt.db", {}, "opt.json")


def test_an_option_url_drops_the_toml_seed(tree: Path) -> None:
    s = resolve("sqlite:///opt.db", None, cwd=tree)
    assert "seed" not in s.platform_options
    assert s.state == str(tree / ".reconcile" / "state.json")


def test_empty_environment_values_are_ignored(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILE_PLATFORM", "")
    monkeypatch.setenv("RECONCILE_STATE", "")
    s = resolve(cwd=tree)
    assert url_of(s) == f"sqlite:///{tree}/.reconcile/platform.db"
    assert s.state == str(tree / ".reconcile" / "state.json")


def test_a_toml_without_tables_uses_the_defaults_beside_the_cwd(tmp_path: Path) -> None:
    (tmp_path / "reconcile.toml").write_text("# nothing configured\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    s = resolve(cwd=sub)
    assert s.config_file == tmp_path / "reconcile.toml"
    assert url_of(s) == f"sqlite:///{sub}/.reconcile/platform.db"
    assert "seed" not in s.platform_options


def test_a_directory_named_reconcile_toml_is_not_a_config(tmp_path: Path) -> None:
    no_config_above(tmp_path)
    (tmp_path / "reconcile.toml").mkdir()
    assert resolve(cwd=tmp_path).config_file is None


@pytest.mark.parametrize("text", ["[platform\nurl = 1\n", "url = \n", "[platform]\nurl = 'a'\nurl = 'b'\n"])
def test_bad_toml_is_a_clear_error(tmp_path: Path, text: str) -> None:
    f = tmp_path / "reconcile.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        resolve(cwd=tmp_path)
    assert e.value.message.startswith(f"{f}: not valid TOML: ")


@pytest.mark.parametrize("text", ['platform = "sqlite:///x.db"\n', "state = 3\n"])
def test_platform_and_state_must_be_tables(tmp_path: Path, text: str) -> None:
    (tmp_path / "reconcile.toml").write_text(text)
    with pytest.raises(ConfigError) as e:
        resolve(cwd=tmp_path)
    assert e.value.message.startswith(f"{tmp_path / 'reconcile.toml'}: [")
    assert e.value.message.endswith("] must be a table")


def test_resolve_uses_the_current_directory(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree / "moves")
    assert config.resolve().config_file == tree / "reconcile.toml"


# -- through the command line --------------------------------------------------------------------
def test_cli_bad_toml_exits_1_with_the_file_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "reconcile.toml").write_text("[platform\n")
    (tmp_path / "m.yaml").write_text("")
    monkeypatch.chdir(tmp_path)
    r = run_main("plan", "m.yaml")
    assert r.code == 1
    assert r.err.startswith(f"error: {tmp_path / 'reconcile.toml'}: not valid TOML: ")
    assert "Traceback" not in r.err and r.out == ""


def test_toml_seed_creates_the_platform_on_first_use(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tree / "examples").mkdir()
    shutil.copyfile(SEED, tree / "examples" / "platform.yaml")
    shutil.copytree(MOVES, tree / "moves", dirs_exist_ok=True)
    monkeypatch.chdir(tree / "moves" / "team")
    r = CliRunner().invoke(cli, ["plan", "--format", "json", "../acme-to-northwind.yaml"])
    assert r.exit_code == 0, r.output
    assert (tree / ".reconcile" / "platform.db").is_file()
    assert f'"url": "sqlite:///{tree}/.reconcile/platform.db"' in r.stdout
    assert not (tree / ".reconcile" / "state.json").exists()  # plan never writes the state


def test_environment_platform_is_used_by_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 tree: Path) -> None:
    from conftest import init_platform

    url = init_platform(tmp_path)
    shutil.copytree(MOVES, tree / "moves", dirs_exist_ok=True)
    monkeypatch.chdir(tree)
    monkeypatch.setenv("RECONCILE_PLATFORM", url)
    r = CliRunner().invoke(cli, ["plan", "--format", "json", "moves"])
    assert r.exit_code == 0, r.output
    assert f'"url": "{url}"' in r.stdout
    assert not (tree / ".reconcile").exists()  # the toml's seed was not used
