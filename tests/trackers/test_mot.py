"""MOT files, HOTA / CLEAR scores on hand-computed cases, and ``edgewatch eval-mot``."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scenes import flicker, occlusion, pan

from edgewatch.cli import main as cli_main
from edgewatch.config import ByteTrackConfig
from edgewatch.errors import ConfigError, SourceError
from edgewatch.trackers import build_tracker
from edgewatch.trackers.mot import (
    HOTA_ALPHAS,
    evaluate,
    find_sequences,
    hota,
    load_tracker_config,
    read_mot_txt,
    read_sequence,
    run_tracker,
    write_results,
)


def _rows(*rows: tuple[float, ...]) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, 7)


B = (0.0, 0.0, 10.0, 10.0)

# Each case: gt rows, tracker rows, expected HOTA, MOTA, IDF1, switches.
CASES = {
    # perfect
    "perfect": (
        _rows((1, 1, *B, 1), (2, 1, *B, 1), (3, 1, *B, 1)),
        _rows((1, 5, *B, 1), (2, 5, *B, 1), (3, 5, *B, 1)),
        1.0,
        1.0,
        1.0,
        0,
    ),
    # one object, tracker id changes after 2 of 4 frames: DetA 1, AssA
    # (2 * 2/4 + 2 * 2/4) / 4 = 0.5, HOTA sqrt(0.5); MOTA 1 - 1/4; IDF1 2*2/(2*2+2+2)
    "id-change": (
        _rows((1, 1, *B, 1), (2, 1, *B, 1), (3, 1, *B, 1), (4, 1, *B, 1)),
        _rows((1, 1, *B, 1), (2, 1, *B, 1), (3, 2, *B, 1), (4, 2, *B, 1)),
        math.sqrt(0.5),
        0.75,
        0.5,
        1,
    ),
    # IoU exactly 0.5 (half the box): matched for the 10 alphas 0.05..0.50,
    # unmatched for the other 9, so HOTA = 10 / 19; CLEAR matches at IoU >= 0.5
    "half-overlap": (
        _rows((1, 1, *B, 1)),
        _rows((1, 1, 0, 0, 10, 5, 1)),
        10 / 19,
        1.0,
        1.0,
        0,
    ),
    # nothing tracked: 2 misses
    "empty": (
        _rows((1, 1, *B, 1), (2, 1, *B, 1)),
        np.zeros((0, 7)),
        0.0,
        0.0,
        0.0,
        0,
    ),
    # frame 3 is one miss plus one false positive: DetA 2 / (2 + 1 + 1) = 0.5;
    # the pair met in 2 of the 3 + 3 - 2 frames either exists: AssA 0.5; HOTA 0.5
    "miss+fp": (
        _rows((1, 1, *B, 1), (2, 1, *B, 1), (3, 1, *B, 1)),
        _rows((1, 1, *B, 1), (2, 1, *B, 1), (3, 1, 50, 50, 10, 10, 1)),
        0.5,
        1 / 3,
        2 / 3,
        0,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hand_computed(name: str) -> None:
    gt, res, hota_v, mota, idf1, switches = CASES[name]
    s = evaluate(gt, res)
    assert s["HOTA"] == pytest.approx(hota_v)
    assert s["mota"] == pytest.approx(mota)
    assert s["idf1"] == pytest.approx(idf1)
    assert s["num_switches"] == switches


def test_hota_alphas() -> None:
    assert len(HOTA_ALPHAS) == 19
    np.testing.assert_allclose(HOTA_ALPHAS[[0, 9, 18]], [0.05, 0.5, 0.95])


@pytest.mark.parametrize(
    "scene", [flicker, lambda: occlusion(40), pan], ids=["flicker", "occl40", "pan"]
)
def test_hota_detection_counts_match_motmetrics(tmp_path: Path, scene: object) -> None:
    """Parity: with well separated objects, HOTA's matching at alpha 0.5 is CLEAR's.

    So HOTA_TP / FN / FP at IoU 0.5 equal motmetrics' detections (matches +
    switches), misses and false positives.
    """
    seq = read_sequence(scene().write(tmp_path))  # type: ignore[operator]
    res, _ = run_tracker(seq, build_tracker(ByteTrackConfig(), seq.fps))
    assert seq.gt is not None
    res = res.copy()
    res[::7, 2] += 6.0  # shift some boxes so that localisation varies (IoU ~0.7-0.8)
    h = hota(seq.gt, res)
    s = evaluate(seq.gt, res)
    a = 9  # alpha 0.50
    assert h["HOTA_TP"][a] == s["num_detections"]  # type: ignore[index]
    assert h["HOTA_FN"][a] == s["num_misses"]  # type: ignore[index]
    assert h["HOTA_FP"][a] == s["num_false_positives"]  # type: ignore[index]


def test_results_round_trip(tmp_path: Path) -> None:
    res = _rows((1, 3, 1.5, 2.25, 10, 20, 0.9), (2, 3, 2.5, 2.25, 10, 20, 0.8))
    write_results(tmp_path / "r" / "seq.txt", res)
    text = (tmp_path / "r" / "seq.txt").read_text().splitlines()
    assert text[0] == "1,3,1.50,2.25,10.00,20.00,0.900,-1,-1,-1"
    back = read_mot_txt(tmp_path / "r" / "seq.txt")
    np.testing.assert_allclose(back[:, :7], res)


def test_sequence_folder_layout(tmp_path: Path) -> None:
    flicker().write(tmp_path)
    occlusion(40).write(tmp_path)
    assert [p.name for p in find_sequences(tmp_path)] == ["flicker", "occlusion40"]
    assert [p.name for p in find_sequences(tmp_path / "flicker")] == ["flicker"]
    seq = read_sequence(tmp_path / "flicker")
    assert (seq.name, seq.fps, seq.length, seq.width, seq.height) == ("flicker", 30.0, 50, 640, 360)
    assert seq.img_dir is None
    d = seq.detections(10)  # object 1 is missed in frame 10
    assert len(d) == 2
    with pytest.raises(SourceError, match="neither a MOT sequence"):
        find_sequences(tmp_path / "flicker" / "det")


@pytest.mark.parametrize(
    ("spec", "overrides", "expect", "error"),
    [
        ("bytetrack", [], {"type": "bytetrack", "track_buffer": 30}, None),
        (
            "botsort",
            ["track_buffer=60", "tracker.gmc_method=orb"],
            {"track_buffer": 60, "gmc_method": "orb"},
            None,
        ),
        (
            "configs/trackers/botsort.yaml",
            ["with_reid=true"],
            {"type": "botsort", "with_reid": True},
            None,
        ),
        ("bytetrack", ["no_such_key=1"], None, "no_such_key: unknown key"),
        ("botsort", ["match_thresh=2"], None, "match_thresh"),
        ("missing.yaml", [], None, "cannot read"),
    ],
)
def test_load_tracker_config(
    spec: str, overrides: list[str], expect: dict | None, error: str | None
) -> None:
    root = Path(__file__).resolve().parents[2]
    if spec.endswith(".yaml"):
        spec = str(root / spec)
    if error:
        with pytest.raises(ConfigError, match=error):
            load_tracker_config(spec, overrides)
        return
    cfg = load_tracker_config(spec, overrides)
    dumped = cfg.model_dump(mode="json")
    assert {k: dumped[k] for k in expect} == expect  # type: ignore[union-attr]


def test_eval_mot_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    occlusion(40).write(data)
    flicker().write(data)
    out = tmp_path / "out"
    code = cli_main(
        [
            "eval-mot",
            str(data),
            "--tracker",
            "bytetrack",
            "--out",
            str(out),
            "--set",
            "track_buffer=60",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header == ["sequence", "HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDs", "Frag", "ms/frame"]
    rows = {
        ln.split()[0]: ln.split() for ln in lines[1:] if ln.split() and ln.split()[0] != "results:"
    }
    assert set(rows) == {"occlusion40", "flicker", "COMBINED"}
    assert rows["occlusion40"][6:8] == ["0", "1"]  # IDs, Frag
    assert rows["flicker"][6:8] == ["0", "3"]
    assert rows["COMBINED"][6:8] == ["0", "4"]
    assert (out / "occlusion40.txt").is_file() and (out / "flicker.txt").is_file()
    res = read_mot_txt(out / "occlusion40.txt")
    assert set(res[:, 1].astype(int)) == {1, 2}


def test_eval_mot_bad_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flicker().write(tmp_path)
    assert cli_main(["eval-mot", str(tmp_path), "--set", "bogus=1"]) == 2
    assert "bogus: unknown key" in capsys.readouterr().err


@pytest.mark.parametrize(("with_gt", "code"), [(True, 2), (False, 0)])
def test_eval_mot_without_motmetrics(tmp_path: Path, with_gt: bool, code: int) -> None:
    """motmetrics made unimportable (a shadowing package that raises, as a missing one)."""
    shadow = tmp_path / "shadow" / "motmetrics"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'motmetrics'\", name='motmetrics')\n"
    )
    seq = flicker().write(tmp_path / "data")
    if not with_gt:  # nothing to score: the tracker runs and writes its results anyway
        (seq / "gt" / "gt.txt").unlink()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), *sys.path])}
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "edgewatch", "eval-mot", str(tmp_path / "data"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    if with_gt:
        assert "pip install 'edgewatch[mot]'" in r.stderr
        assert not out.exists()  # refused before tracking anything
    else:
        assert (out / "flicker.txt").is_file()


def test_eval_mot_sequence_name_cannot_escape_out(tmp_path: Path) -> None:
    seq = flicker().write(tmp_path / "data")
    ini = seq / "seqinfo.ini"
    ini.write_text(ini.read_text().replace("name = flicker", "name = ../../../esc/escape"))
    assert "escape" in ini.read_text()
    out = tmp_path / "a" / "b" / "c" / "out"
    assert cli_main(["eval-mot", str(seq), "--out", str(out)]) == 0
    assert (out / "escape.txt").is_file()
    assert not (tmp_path / "esc").exists()


@pytest.mark.parametrize(
    ("ini", "det_line", "error"),
    [
        ("name=x\nframeRate=25\n", None, "seqinfo.ini: File contains no section headers. file:"),
        ("[Sequence]\nname=x\nframeRate=abc\n", None, "seqinfo.ini: frameRate='abc' is not a"),
        ("[Sequence]\nname=x\nframeRate=nan\n", None, "seqinfo.ini: frameRate='nan' is not a"),
        ("[Sequence]\nname=x\nframeRate=0\n", None, "seqinfo.ini: frameRate='0' is not > 0"),
        ("[Sequence]\nname=x\nseqLength=1.5\n", None, "seqinfo.ini: seqLength='1.5' is not an"),
        ("[Sequence]\nname=x\nimWidth=-4\n", None, "seqinfo.ini: imWidth='-4' is not an"),
        ("[Sequence]\nname=..\n", None, "seqinfo.ini: name: sequence name '..' gives no usable"),
        ("[Sequence]\nname=a/\n", None, "seqinfo.ini: name: sequence name 'a/' gives no usable"),
        ("[Sequence]\nname=x\n", "3,-1,nan,4,5,6,0.9,-1,-1,-1",
         "det.txt:5: NaN or infinite value: '3,-1,nan,4,5,6,0.9,-1,-1,-1'"),
        ("[Sequence]\nname=x\n", "3,-1,1,4,inf,6,0.9,-1,-1,-1", "det.txt:5: NaN or infinite"),
    ],
)
def test_eval_mot_bad_sequence_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ini: str, det_line: str | None, error: str
) -> None:
    """Malformed seqinfo.ini / det.txt: exit 2 with the file and key or line, no traceback."""
    seq = tmp_path / "seq"
    (seq / "det").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text(ini)
    # loadtxt skips the blank and comment lines: det_line is data row 2 but line 5
    lines = ["1,-1,1,2,3,4,0.9,-1,-1,-1", "", "# a comment", "2,-1,1,2,3,4,0.9,-1,-1,-1"]
    if det_line is not None:
        lines.append(det_line)
    (seq / "det" / "det.txt").write_text("\n".join(lines) + "\n")
    assert cli_main(["eval-mot", str(seq), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgewatch eval-mot: ") and error in err, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
