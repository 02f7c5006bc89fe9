"""configs/edgewatch.service: the settings the daemon relies on, and systemd's own check."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgewatch.config import PipelineConfig

UNIT = Path(__file__).resolve().parent.parent / "configs" / "edgewatch.service"
VENV_BIN = "/opt/edgewatch/.venv/bin/edgewatch"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value (systemd allows repeated keys)."""
    out: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line}"
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def seconds(value: str) -> float:
    """A systemd time span of plain seconds or with one s/min unit."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min)?", value)
    assert m, value
    return float(m.group(1)) * (60 if m.group(2) == "min" else 1)


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("section", "key", "expected"),
    [
        ("Service", "Type", "exec"),
        ("Service", "ExecStart", f"{VENV_BIN} run /etc/edgewatch/pipeline.yaml"),
        ("Service", "ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Service", "Restart", "on-failure"),
        ("Service", "KillSignal", "SIGTERM"),
        ("Service", "EnvironmentFile", "-/etc/edgewatch/env"),
        ("Service", "User", "edgewatch"),
        ("Service", "NoNewPrivileges", "yes"),
        ("Service", "ProtectSystem", "strict"),
        ("Service", "PrivateTmp", "yes"),
        ("Service", "RestartPreventExitStatus", "2"),
        ("Install", "WantedBy", "multi-user.target"),
    ],
)
def test_unit_setting(
    unit: dict[str, dict[str, list[str]]], section: str, key: str, expected: str
) -> None:
    assert unit[section][key] == [expected]


def test_stop_timeout_exceeds_shutdown_timeout(unit: dict[str, dict[str, list[str]]]) -> None:
    default = PipelineConfig.model_fields["shutdown_timeout"].default
    assert seconds(unit["Service"]["TimeoutStopSec"][0]) >= 2 * default


def test_restart_is_rate_capped(unit: dict[str, dict[str, list[str]]]) -> None:
    svc, head = unit["Service"], unit["Unit"]
    assert seconds(svc["RestartSec"][0]) >= 1
    burst, interval = int(head["StartLimitBurst"][0]), seconds(head["StartLimitIntervalSec"][0])
    # the cap must be reachable: burst restarts spaced RestartSec apart fit in the interval
    assert 1 <= burst * seconds(svc["RestartSec"][0]) < interval


def test_output_dir_is_writable_and_webcams_readable(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    svc = unit["Service"]
    workdir = svc["WorkingDirectory"][0]
    writable = " ".join(svc["ReadWritePaths"]).split()
    assert workdir in writable
    assert "video" in " ".join(svc["SupplementaryGroups"]).split()
    assert "PrivateDevices" not in svc  # it would hide /dev/video* and GPUs


def _systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    return exe


def _unit_with_real_binary(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists here."""
    fake = tmp_path / "edgewatch"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    text = UNIT.read_text(encoding="utf-8").replace(VENV_BIN, str(fake))
    out = tmp_path / "edgewatch.service"
    out.write_text(text, encoding="utf-8")
    return out


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    exe = _systemd_analyze()
    unit_file = _unit_with_real_binary(tmp_path)
    proc = subprocess.run(
        [exe, "verify", str(unit_file)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (proc.returncode, proc.stderr.strip()) == (0, "")


def test_systemd_analyze_security_offline(tmp_path: Path) -> None:
    exe = _systemd_analyze()
    unit_file = _unit_with_real_binary(tmp_path)
    proc = subprocess.run(
        [exe, "security", "--offline=true", unit_file.name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    if "--offline" in proc.stderr and "unrecognized" in proc.stderr:
        pytest.skip("this systemd-analyze has no offline security check (systemd < 250)")
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout[-500:] + proc.stderr[-500:]
    assert float(m.group(1)) <= 3.0
