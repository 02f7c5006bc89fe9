"""Tracker YAMLs: ours and Ultralytics' published ones validate; unknown keys do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.config import BotSortConfig, ByteTrackConfig, parse_config
from edgewatch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

# ultralytics/cfg/trackers/*.yaml as published (the keys of several releases:
# older ones carry min_hits and appearance_thresh 0.25, newer ones model: auto).
ULTRALYTICS = {
    "bytetrack-8.0": """
tracker_type: bytetrack
track_high_thresh: 0.25
track_low_thresh: 0.1
new_track_thresh: 0.25
min_hits: 2
track_buffer: 30
match_thresh: 0.8
fuse_score: True
""",
    "botsort-8.1": """
tracker_type: botsort
track_high_thresh: 0.25
track_low_thresh: 0.1
new_track_thresh: 0.25
track_buffer: 30
match_thresh: 0.8
fuse_score: True
gmc_method: sparseOptFlow
proximity_thresh: 0.5
appearance_thresh: 0.25
with_reid: False
""",
    "botsort-8.3": """
tracker_type: botsort
track_high_thresh: 0.25
track_low_thresh: 0.1
new_track_thresh: 0.25
track_buffer: 30
match_thresh: 0.8
fuse_score: True
gmc_method: sparseOptFlow
proximity_thresh: 0.5
appearance_thresh: 0.8
with_reid: False
model: auto
""",
}


def _pipeline(tmp_path: Path, tracker: str) -> str:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    video = tmp_path / "v.mp4"
    return (
        f"sources:\n  - {{id: cam, uri: {video}}}\n"
        f"detector: {{model: {model}}}\ntracker: {tracker}\n"
    )


@pytest.fixture
def video(tmp_path: Path) -> Path:
    p = tmp_path / "v.mp4"
    p.write_bytes(b"x")
    return p


@pytest.mark.parametrize("name", sorted(ULTRALYTICS))
def test_ultralytics_files_validate(tmp_path: Path, video: Path, name: str) -> None:
    f = tmp_path / f"{name}.yaml"
    f.write_text(ULTRALYTICS[name])
    cfg = parse_config(_pipeline(tmp_path, str(f)), name=str(tmp_path / "p.yaml"))
    expected = BotSortConfig if name.startswith("botsort") else ByteTrackConfig
    assert type(cfg.tracker) is expected
    assert cfg.tracker.track_buffer == 30


@pytest.mark.parametrize(
    ("file", "expected", "fields"),
    [
        ("bytetrack.yaml", ByteTrackConfig, {"match_thresh": 0.8, "min_hits": 1}),
        (
            "botsort.yaml",
            BotSortConfig,
            {"gmc_method": "sparseOptFlow", "appearance_thresh": 0.8, "model": "auto"},
        ),
    ],
)
def test_our_files_validate(
    tmp_path: Path, video: Path, file: str, expected: type, fields: dict
) -> None:
    cfg = parse_config(_pipeline(tmp_path, str(ROOT / "configs" / "trackers" / file)))
    assert type(cfg.tracker) is expected
    dumped = cfg.tracker.model_dump(mode="json")
    assert {k: dumped[k] for k in fields} == fields


@pytest.mark.parametrize(
    ("tracker", "message"),
    [
        ("{type: bytetrack, gmc_method: orb}", "tracker.gmc_method: unknown key"),
        ("{type: botsort, no_such_option: 1}", "tracker.no_such_option: unknown key"),
        ("{type: botsort, gmc_method: optical}", "gmc_method"),
        ("{type: bytetrack, track_buffer: 0}", "track_buffer"),
    ],
)
def test_bad_tracker_options(tmp_path: Path, video: Path, tracker: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_pipeline(tmp_path, tracker))
