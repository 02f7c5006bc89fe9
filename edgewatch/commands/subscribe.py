"""``edgewatch subscribe ENDPOINT``: print the messages of a ZeroMQ sink, one JSON per line.

For debugging a deployment: connects a SUB socket (CURVE when both keys are
given), prints every message body as one line on stdout and optionally saves
the JPEG frames as ``DIR/<source>_<frame>.jpg``.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from pathlib import Path
from typing import Any

from edgewatch.config import check_endpoint
from edgewatch.errors import EdgewatchError
from edgewatch.secrets import mask
from edgewatch.sinks.zmq import Message, Subscriber


def register(sub: Any) -> None:
    p = sub.add_parser("subscribe", help="print messages of a ZeroMQ sink", description=__doc__)
    p.add_argument("endpoint", help="e.g. tcp://127.0.0.1:5555")
    p.add_argument("--topic", action="append", default=[], metavar="SRC",
                   help="only this source id (repeatable; default all)")
    p.add_argument("--server-key", type=Path, help="server public key file (CURVE)")
    p.add_argument("--client-key", type=Path, help="client secret key file (CURVE)")
    p.add_argument("--count", type=int, default=0, metavar="N",
                   help="exit after N messages (default: run until Ctrl-C)")
    p.add_argument("--timeout", type=float, default=0.0, metavar="S",
                   help="exit with code 1 when no message arrives for S seconds")
    p.add_argument("--save-images", type=Path, metavar="DIR", help="save JPEG frames here")
    p.add_argument("--bind", action="store_true", help="bind instead of connect")
    p.set_defaults(func=main)


def _save_image(msg: Message, directory: Path) -> None:
    if msg.image is None:
        return
    frame = msg.body.get("frame", 0)
    path = directory / f"{msg.topic}_{int(frame):06d}.jpg"
    try:
        path.write_bytes(msg.image)
    except OSError as e:
        raise EdgewatchError(f"cannot write {path}: {e.strerror or e}") from None


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def endpoint_problem(endpoint: str, *, bind: bool = False) -> str | None:
    """Why ``endpoint`` cannot be connected to (bound with ``bind``), or None.

    ZeroMQ connects asynchronously and never reports a bad tcp host, so it is
    checked here: an IP address (IPv6 in brackets) or an RFC 1123 host name;
    ``*`` only when binding.

    >>> endpoint_problem("tcp://999.0.0.1:5")
    "endpoint 'tcp://999.0.0.1:5': '999.0.0.1' is not a valid IP address or host name"
    >>> endpoint_problem("tcp://cam-1.local:5555") is None
    True
    """
    try:
        check_endpoint(endpoint)
    except ValueError as e:
        return str(e)
    transport, _, rest = endpoint.partition("://")
    if transport != "tcp":
        return None
    host = rest.rpartition(":")[0].rpartition(";")[2]  # tcp://[source;]host:port
    if _valid_host(host, bind=bind):
        return None
    return f"endpoint {endpoint!r}: {host!r} is not a valid IP address or host name"


def _valid_host(host: str, *, bind: bool) -> bool:
    if host == "*":
        return bind
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1].partition("%")[0])
        except ValueError:
            return False
        return True
    labels = host.removesuffix(".").split(".")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def main(args: argparse.Namespace) -> int:
    if (args.server_key is None) != (args.client_key is None):
        print("edgewatch subscribe: --server-key and --client-key go together", file=sys.stderr)
        return 2
    problem = endpoint_problem(args.endpoint, bind=args.bind)
    if problem is not None:
        print(f"edgewatch subscribe: {problem}", file=sys.stderr)
        return 2
    if args.save_images is not None:
        args.save_images.mkdir(parents=True, exist_ok=True)
    received = 0
    with Subscriber(args.endpoint, topics=args.topic, server_key=args.server_key,
                    client_key=args.client_key, bind=args.bind) as sub:
        topics = ", ".join(args.topic) if args.topic else "all"
        # ZeroMQ connects in the background: an unreachable host only shows as silence.
        print(f"subscribed to {mask(args.endpoint)} (topics: {topics}); "
              "waiting for messages, Ctrl-C to stop", file=sys.stderr, flush=True)
        try:
            while args.count <= 0 or received < args.count:
                msg = sub.recv(args.timeout if args.timeout > 0 else None)
                if msg is None:
                    print(f"edgewatch subscribe: no message for {args.timeout:g} s",
                          file=sys.stderr)
                    return 1
                sys.stdout.write(msg.raw.decode("utf-8") + "\n")
                sys.stdout.flush()
                if args.save_images is not None:
                    _save_image(msg, args.save_images)
                received += 1
        except KeyboardInterrupt:
            return 0
    return 0
