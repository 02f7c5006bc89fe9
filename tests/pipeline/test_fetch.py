"""``edgewatch models fetch`` against a real HTTP server on 127.0.0.1.

The server (http.server in a thread) serves files from a dict, honours
``Range: bytes=N-`` with 206 + Content-Range, can cut the connection half-way
through the first transfer of a path, and can ignore Range headers.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edgewatch.cli import main
from edgewatch.errors import ModelError
from edgewatch.pipeline.models.fetch import (
    ChecksumError,
    DownloadError,
    UnknownModelError,
    fetch_model,
    resolve_url,
)
from edgewatch.pipeline.models.registry import (
    RegistryEntry,
    RegistryFile,
    builtin_models,
    known_models,
    load_registry_file,
)

PAYLOAD = bytes(range(256)) * 1024 + b"tail"  # 262148 bytes, not a multiple of the chunk size
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class ServerState:
    files: dict[str, bytes]
    cut_first: set[str] = field(default_factory=set)  # paths whose first GET stops half-way
    ignore_range: bool = False
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location (302)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            state.requests.append((self.path, rng))
            if self.path in state.redirects:
                self.send_response(302)
                self.send_header("Location", state.redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            start = 0
            if rng and not state.ignore_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            chunk = body[start:]
            self.send_header("Content-Length", str(len(chunk)))
            self.end_headers()
            if self.path in state.cut_first:
                state.cut_first.discard(self.path)
                self.wfile.write(chunk[: len(chunk) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState(files={"/models/det.onnx": PAYLOAD})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              name="test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _registry(base: str, sha: str = SHA, path: str = "/models/det.onnx",
              size: int | None = None) -> dict[str, RegistryEntry]:
    entry = RegistryEntry(name="det", description="test detector", task="detect",
                          files=(RegistryFile(f"{base}{path}", sha, "det.onnx", size),))
    return {"det": entry}


@pytest.mark.parametrize("size", [None, len(PAYLOAD)])
def test_fetch_success_and_cache_hit(server, tmp_path: Path, size: int | None) -> None:
    base, state = server
    got = fetch_model("det", tmp_path, registry=_registry(base, size=size), progress=False)
    final = tmp_path / "det" / "det.onnx"
    assert [(f.path, f.size, f.cached, f.resumed) for f in got] == [
        (final, len(PAYLOAD), False, False)]
    assert final.read_bytes() == PAYLOAD
    assert not (tmp_path / "det" / "det.onnx.part").exists()
    again = fetch_model("det", tmp_path, registry=_registry(base, size=size), progress=False)
    assert [f.cached for f in again] == [True]
    assert len(state.requests) == 1  # the cache hit did not touch the network


def test_resume_after_interrupted_transfer(server, tmp_path: Path) -> None:
    base, state = server
    state.cut_first.add("/models/det.onnx")
    reg = _registry(base)
    part = tmp_path / "det" / "det.onnx.part"
    with pytest.raises(DownloadError, match="run the command again to resume"):
        fetch_model("det", tmp_path, registry=reg, progress=False)
    half = len(PAYLOAD) // 2
    assert part.read_bytes() == PAYLOAD[:half]
    assert not (tmp_path / "det" / "det.onnx").exists()
    got = fetch_model("det", tmp_path, registry=reg, progress=False)
    assert [(f.resumed, f.cached) for f in got] == [(True, False)]
    assert (tmp_path / "det" / "det.onnx").read_bytes() == PAYLOAD
    assert not part.exists()
    assert state.requests == [("/models/det.onnx", None), ("/models/det.onnx", f"bytes={half}-")]


def test_resume_through_a_redirect(server, tmp_path: Path) -> None:
    """Hugging Face answers /resolve/ with a 302 to its CDN: Range must survive it."""
    base, state = server
    state.redirects["/resolve/det.onnx"] = f"{base}/models/det.onnx"
    state.cut_first.add("/models/det.onnx")
    reg = _registry(base, path="/resolve/det.onnx")
    with pytest.raises(DownloadError, match="connection"):
        fetch_model("det", tmp_path, registry=reg, progress=False)
    fetch_model("det", tmp_path, registry=reg, progress=False)
    assert (tmp_path / "det" / "det.onnx").read_bytes() == PAYLOAD
    half = len(PAYLOAD) // 2
    assert state.requests[-2:] == [("/resolve/det.onnx", f"bytes={half}-"),
                                   ("/models/det.onnx", f"bytes={half}-")]


def test_progress_callback_and_bar(server, tmp_path: Path, capsys) -> None:
    from edgewatch.pipeline.models.fetch import download_file

    base, _ = server
    rf = _registry(base)["det"].files[0]
    seen: list[tuple[int, int | None]] = []
    download_file(rf, tmp_path / "det.onnx", progress=True,
                  on_progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert "det.onnx" in capsys.readouterr().err  # the tqdm bar went to stderr


def test_server_ignoring_range_restarts_from_zero(server, tmp_path: Path) -> None:
    base, state = server
    state.ignore_range = True
    part = tmp_path / "det" / "det.onnx.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage that is not the file's prefix")
    got = fetch_model("det", tmp_path, registry=_registry(base), progress=False)
    assert [f.resumed for f in got] == [False]
    assert (tmp_path / "det" / "det.onnx").read_bytes() == PAYLOAD


def test_complete_part_with_416_is_verified(server, tmp_path: Path) -> None:
    base, _ = server
    part = tmp_path / "det" / "det.onnx.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD)
    fetch_model("det", tmp_path, registry=_registry(base), progress=False)
    assert (tmp_path / "det" / "det.onnx").read_bytes() == PAYLOAD


@pytest.mark.parametrize(("preexisting_part", "stale_final"),
                         [(False, False), (True, False), (False, True)])
def test_checksum_mismatch_leaves_nothing(server, tmp_path: Path, preexisting_part: bool,
                                          stale_final: bool) -> None:
    base, _ = server
    bad = hashlib.sha256(b"something else").hexdigest()
    part = tmp_path / "det" / "det.onnx.part"
    part.parent.mkdir(parents=True)
    if preexisting_part:
        part.write_bytes(PAYLOAD[:1000])
    if stale_final:  # a corrupt file in the cache must not survive a failed re-download
        (tmp_path / "det" / "det.onnx").write_bytes(b"stale")
    with pytest.raises(ChecksumError, match=f"expected {bad}, got {SHA}"):
        fetch_model("det", tmp_path, registry=_registry(base, sha=bad), progress=False)
    assert not (tmp_path / "det" / "det.onnx").exists()
    assert not part.exists()


def test_wrong_file_in_cache_is_replaced(server, tmp_path: Path) -> None:
    base, _ = server
    final = tmp_path / "det" / "det.onnx"
    final.parent.mkdir(parents=True)
    final.write_bytes(b"stale")
    got = fetch_model("det", tmp_path, registry=_registry(base), progress=False)
    assert [f.cached for f in got] == [False]
    assert final.read_bytes() == PAYLOAD


def test_unknown_name_lists_known(tmp_path: Path) -> None:
    reg = _registry("http://127.0.0.1:9")
    with pytest.raises(UnknownModelError, match=r"unknown model 'nope'; known models: det"):
        fetch_model("nope", tmp_path, registry=reg)


def test_http_404(server, tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(DownloadError, match=r"HTTP 404"):
        fetch_model("det", tmp_path, registry=_registry(base, path="/missing.onnx"), progress=False)
    assert list((tmp_path / "det").iterdir()) == []


def test_connection_refused_is_clear(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=rf"http://127.0.0.1:{port}/models/det.onnx: .*refused"):
        fetch_model("det", tmp_path, registry=_registry(f"http://127.0.0.1:{port}"),
                    progress=False, timeout=5)


def test_mirror_env_rewrites_host(server, tmp_path: Path, monkeypatch) -> None:
    base, state = server
    monkeypatch.setenv("EDGEWATCH_MODEL_MIRROR", base)
    reg = _registry("https://huggingface.co")
    fetch_model("det", tmp_path, registry=reg, progress=False)
    assert (tmp_path / "det" / "det.onnx").read_bytes() == PAYLOAD
    assert state.requests[0][0] == "/models/det.onnx"


@pytest.mark.parametrize(
    ("url", "mirror", "expected"),
    [
        ("https://h.co/a/b.onnx", None, "https://h.co/a/b.onnx"),
        ("https://h.co/a/b.onnx", "http://127.0.0.1:8000", "http://127.0.0.1:8000/a/b.onnx"),
        ("https://h.co/a/b.onnx", "http://m:1/base/", "http://m:1/base/a/b.onnx"),
        ("https://h.co/a/b.onnx?download=true", "https://m", "https://m/a/b.onnx?download=true"),
    ],
)
def test_resolve_url(url: str, mirror: str | None, expected: str) -> None:
    assert resolve_url(url, mirror) == expected


def test_cli_fetch_with_registry_file(server, tmp_path: Path, capsys) -> None:
    base, _ = server
    reg = tmp_path / "reg.yaml"
    reg.write_text(
        "models:\n"
        "  - name: det\n"
        "    description: test detector\n"
        "    task: detect\n"
        "    files:\n"
        f"      - {{url: '{base}/models/det.onnx', sha256: '{SHA.upper()}', filename: det.onnx}}\n"
    )
    rc = main(["models", "fetch", "det", "--dest", str(tmp_path / "out"), "--registry", str(reg)])
    out = capsys.readouterr().out
    assert rc == 0
    assert (tmp_path / "out" / "det" / "det.onnx").read_bytes() == PAYLOAD
    assert str(tmp_path / "out" / "det" / "det.onnx") in out
    rc = main(["models", "fetch", "--list", "--registry", str(reg)])
    listing = capsys.readouterr().out
    assert rc == 0
    assert "det" in listing and "test detector" in listing and "yolov8n" in listing


def test_cli_fetch_errors_exit_1(tmp_path: Path, capsys) -> None:
    rc = main(["models", "fetch", "no-such-model", "--dest", str(tmp_path)])
    assert rc == 1
    assert "unknown model 'no-such-model'; known models:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ("models: 3\n", "expected a mapping with a 'models' list"),
        ("models:\n  - {name: x, files: [{url: 'ftp://h/x', sha256: '" + "0" * 64
         + "', filename: x}]}\n", r"models\[0\]: registry file url must be http"),
        ("models:\n  - {name: x, files: [{url: 'http://h/x', sha256: 'abc', filename: x}]}\n",
         r"models\[0\]: registry file sha256 must be 64"),
        ("models:\n  - {name: x, files: [{url: 'http://h/x', sha256: '" + "0" * 64
         + "', filename: ../x}]}\n", r"models\[0\]: registry file name must be a plain"),
        ("models:\n  - {name: x}\n", r"models\[0\]: 'files'"),
    ],
)
def test_bad_registry_file(tmp_path: Path, doc: str, match: str) -> None:
    from edgewatch.errors import ModelError

    p = tmp_path / "reg.yaml"
    p.write_text(doc)
    with pytest.raises(ModelError, match=match):
        load_registry_file(p)


def test_builtin_registry_is_well_formed() -> None:
    reg = builtin_models()
    assert {"yolov8n", "yolov8n-seg", "yolov8s-pose", "yolo11n"} <= set(reg)
    for name, entry in reg.items():
        assert entry.name == name
        for f in entry.files:
            assert f.url.startswith("https://")
    extra = RegistryEntry("yolov8n", "override", "detect",
                          (RegistryFile("http://127.0.0.1/x", SHA, "x.onnx"),))
    assert known_models([extra])["yolov8n"].description == "override"


@pytest.mark.parametrize("dest", ["file", "/proc/edgewatch-test"])
def test_unusable_dest_is_a_model_error(server, tmp_path: Path, dest: str) -> None:
    """The library: a --dest under a file or in /proc is a ModelError, not an OSError."""
    (tmp_path / "file").write_text("x")
    root = tmp_path / dest
    base, state = server
    with pytest.raises(ModelError, match=f"cannot create {root}/det: "):
        fetch_model("det", root, registry=_registry(base), progress=False)
    assert state.requests == []


@pytest.mark.parametrize("dest", ["file", "file/sub", "/proc/edgewatch-test"])
def test_cli_unusable_dest_exits_2(tmp_path: Path, capsys, dest: str) -> None:
    (tmp_path / "file").write_text("x")
    root = tmp_path / dest
    assert main(["models", "fetch", "yolo11n", "--dest", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgewatch models fetch: --dest {root}: cannot create this folder"), err
