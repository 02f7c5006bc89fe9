"""secrets.mask / mask_uri as tables, and the CLI's error lines pass through mask()."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.cli import main
from edgewatch.secrets import mask, mask_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # userinfo passwords, any scheme
        ("rtsp://admin:hunter2@cam.local/s", "rtsp://admin:***@cam.local/s"),
        ("open http://u:p%40ss@10.0.0.1:8080/mjpg", "open http://u:***@10.0.0.1:8080/mjpg"),
        # credential-like query parameters of HTTP / HLS URLs
        (
            "https://cdn.example/live/index.m3u8?token=abc123",
            "https://cdn.example/live/index.m3u8?token=***",
        ),
        (
            "http://cam/video.cgi?user=admin&password=pw123&res=hd",
            "http://cam/video.cgi?user=admin&password=***&res=hd",
        ),
        ("http://cam/mjpg?resolution=640&key=K3Y9", "http://cam/mjpg?resolution=640&key=***"),
        ("http://cam/s?auth=Zm9vOmJhcg==&fps=5", "http://cam/s?auth=***&fps=5"),
        ("http://h/x.m3u8?access_token=t.o.k", "http://h/x.m3u8?access_token=***"),
        ("http://h/x?API_KEY=abcd#frag", "http://h/x?API_KEY=***#frag"),
        ("http://h/x?apikey=abcd&pwd=zz9", "http://h/x?apikey=***&pwd=***"),
        (
            "s3 https://b.s3/seg.ts?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=f00d&X-Amz-Expires=60",
            "s3 https://b.s3/seg.ts?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60",
        ),
        ("error on 'http://h/x?client_secret=s3c'", "error on 'http://h/x?client_secret=***'"),
        ("both http://u:pw1@h/x?sig=abc", "both http://u:***@h/x?sig=***"),
        # passwords holding '/', ':', '?', '#', '@': userinfo runs to the LAST '@'
        ("rtsp://admin:Sl/ashPw55@127.0.0.1:1/s", "rtsp://admin:***@127.0.0.1:1/s"),
        ("uri 'rtsp://a:b:c?d#e@cam:554/s' down", "uri 'rtsp://a:***@cam:554/s' down"),
        ('"rtsp://a:p@ss/w@cam/s" x@y', '"rtsp://a:***@cam/s" x@y'),
        ("rtsp://u:***@cam/s", "rtsp://u:***@cam/s"),
        ("rtsp://tok@cam/s", "rtsp://tok@cam/s"),
        # more credential-like query keys, any case
        (
            "http://h/x?PW=1a&Pass=2b&passwd=3c&secret=4d&Signature=5e&access_token=6f",
            "http://h/x?PW=***&Pass=***&passwd=***&secret=***&Signature=***&access_token=***",
        ),
        ("http://h/x?api_key=7g&SESSION=8h&q=1", "http://h/x?api_key=***&SESSION=***&q=1"),
        # a masked query value keeps a closing parenthesis after it
        ("see (http://h/x?token=abc)", "see (http://h/x?token=***)"),
        # not credentials: left alone
        ("http://h/x?monkey=1&keyframe=3&passes=2", "http://h/x?monkey=1&keyframe=3&passes=2"),
        ("http://h/x?token=", "http://h/x?token="),
        ("rtsp://cam.local/stream1", "rtsp://cam.local/stream1"),
        ("token=abc outside a URL query", "token=abc outside a URL query"),
    ],
)
def test_mask(text: str, expected: str) -> None:
    assert mask(text) == expected


@pytest.mark.parametrize(
    ("uri", "expected", "secret"),
    [
        ("rtsp://u:Pw-Uri-1@10.0.0.1:554/s", "rtsp://u:***@10.0.0.1:554/s", "Pw-Uri-1"),
        (
            "https://h/live.m3u8?quality=hd&token=Tk-Uri-2",
            "https://h/live.m3u8?quality=hd&token=***",
            "Tk-Uri-2",
        ),
        ("http://h/mjpg?Password=Pw-Uri-3", "http://h/mjpg?Password=***", "Pw-Uri-3"),
        ("rtsp://admin:Sl/ash-Uri-4@10.0.0.1/s", "rtsp://admin:***@10.0.0.1/s", "Sl/ash-Uri-4"),
        ("rtsp://a:Q?h#Uri-5@cam/s?token=Tk", "rtsp://a:***@cam/s?token=***", "Q?h#Uri-5"),
    ],
)
def test_mask_uri_registers_the_secret(uri: str, expected: str, secret: str) -> None:
    assert mask_uri(uri) == expected
    # Registered: masked later even where it is not inside a URI (e.g. FFmpeg quoting it).
    assert mask(f"server said: bad credential {secret}") == "server said: bad credential ***"


def test_cli_error_line_is_masked(tmp_path: Path, monkeypatch, capsys) -> None:
    """An EdgewatchError that quotes a ${VAR} value is printed masked (exit 1)."""
    secret_dir = tmp_path / "Cli-s3cret-dir"
    secret_dir.mkdir()
    (secret_dir / "m.onnx").write_text("not an onnx file")
    monkeypatch.setenv("EW_TEST_MODEL_DIR", str(secret_dir))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources:\n  - {id: a, uri: 'rtsp://viewer:Cli-pw-9@127.0.0.1:9/x'}\n"
        "detector: {model: '${EW_TEST_MODEL_DIR}/m.onnx'}\n"
    )
    assert main(["run", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "edgewatch: error: ***/m.onnx: not an ONNX file" in err, err
    assert "Cli-s3cret-dir" not in err and "Cli-pw-9" not in err



def test_validate_masks_a_password_with_a_slash(tmp_path: Path, capsys) -> None:
    """urlparse takes 'admin' for the host of this URI; validate must still mask it."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources:\n  - {id: a, uri: 'rtsp://admin:Sl/ashPw55@127.0.0.1:1/s'}\n"
        "detector: {model: 'samples/models/fall_detector.onnx'}\n"
    )
    main(["validate", str(cfg)])
    out = capsys.readouterr()
    assert "rtsp://admin:***@127.0.0.1:1/s" in out.out + out.err
    assert "Sl/ash" not in out.out + out.err and "ashPw55" not in out.out + out.err
