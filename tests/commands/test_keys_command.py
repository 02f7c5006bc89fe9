"""``edgewatch keys generate``: zmq.auth-compatible CURVE certificates."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest
import zmq.auth

from edgewatch.commands import keys
from edgewatch.errors import EdgewatchError


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    keys.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_generate_writes_a_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "new" / "keys"
    assert _run(["keys", "generate", str(d), "--name", "lobby"]) == 0
    out = capsys.readouterr().out
    assert str(d / "lobby.key") in out and str(d / "lobby.key_secret") in out
    public, no_secret = zmq.auth.load_certificate(d / "lobby.key")
    public2, secret = zmq.auth.load_certificate(d / "lobby.key_secret")
    assert no_secret is None and public == public2 and len(public) == 40 and len(secret) == 40
    assert stat.S_IMODE((d / "lobby.key_secret").stat().st_mode) == 0o600
    assert zmq.curve_public(secret) == public


def test_default_name_and_force(tmp_path: Path) -> None:
    assert _run(["keys", "generate", str(tmp_path)]) == 0
    first = (tmp_path / "server.key").read_bytes()
    with pytest.raises(EdgewatchError, match="exists"):
        _run(["keys", "generate", str(tmp_path)])
    assert (tmp_path / "server.key").read_bytes() == first
    assert _run(["keys", "generate", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "server.key").read_bytes() != first


@pytest.mark.parametrize("name", ["", "a/b", ".hidden"])
def test_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(EdgewatchError, match="invalid key name"):
        keys.generate_keypair(tmp_path, name)


def test_unwritable_dir(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(EdgewatchError, match="cannot write keys"):
        keys.generate_keypair(tmp_path / "f" / "k", "server")
