"""``edgewatch keys generate DIR``: a CURVE key pair for the ZeroMQ sink or a subscriber.

Writes ``DIR/NAME.key`` (the public certificate, safe to share) and
``DIR/NAME.key_secret`` (public and secret key, mode 0600) in the format of
``zmq.auth.create_certificates``. A server uses its ``.key_secret`` as
``curve.secret_key``; clients get the server's ``.key``. A client's ``.key``
goes into the server's ``curve.authorized_keys`` folder.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import zmq.auth

from edgewatch.errors import EdgewatchError


def register(sub: Any) -> None:
    p = sub.add_parser("keys", help="manage CURVE keys for ZeroMQ", description=__doc__)
    ksub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = ksub.add_parser("generate", help="write NAME.key and NAME.key_secret into DIR")
    g.add_argument("dir", type=Path, help="folder for the key files (created if needed)")
    g.add_argument("--name", default="server", help="file name stem (default: server)")
    g.add_argument("--force", action="store_true", help="overwrite existing key files")
    g.set_defaults(func=generate)


def generate_keypair(directory: Path, name: str, *, force: bool = False) -> tuple[Path, Path]:
    """Write a CURVE key pair; return ``(public_file, secret_file)``."""
    if not name or "/" in name or name.startswith("."):
        raise EdgewatchError(f"invalid key name {name!r}")
    public = directory / f"{name}.key"
    secret = directory / f"{name}.key_secret"
    existing = [p for p in (public, secret) if p.exists()]
    if existing and not force:
        raise EdgewatchError(f"{existing[0]} exists (use --force to overwrite)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        pub_s, sec_s = zmq.auth.create_certificates(directory, name)
        os.chmod(sec_s, 0o600)
    except OSError as e:
        raise EdgewatchError(f"cannot write keys into {directory}: {e.strerror or e}") from None
    return Path(pub_s), Path(sec_s)


def generate(args: argparse.Namespace) -> int:
    public, secret = generate_keypair(args.dir, args.name, force=args.force)
    print(f"public key: {public}")
    print(f"secret key: {secret} (keep private)")
    return 0
