"""Pydantic models of the pipeline YAML, and the loader that reports errors.

Every model is frozen and forbids unknown keys. :func:`load_config` reads a
file, interpolates ``${VAR}`` / ``${VAR:-default}`` from the environment,
applies ``--set`` overrides and validates; any problem raises
:class:`~edgewatch.errors.ConfigError` whose lines read
``file:line path: message`` (``configs/demo.yaml:12 sinks[1].path: ...``).

Relative paths are resolved against the current working directory.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edgewatch.errors import ConfigError
from edgewatch.secrets import registry as _secrets


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- sources


class SourceKind(str, enum.Enum):
    AUTO = "auto"
    FILE = "file"
    IMAGES = "images"
    RTSP = "rtsp"
    HTTP = "http"
    WEBCAM = "webcam"


class Transport(str, enum.Enum):
    TCP = "tcp"
    UDP = "udp"


class ReconnectConfig(_Strict):
    initial: float = Field(1.0, gt=0, le=3600, description="first backoff delay, seconds")
    max: float = Field(30.0, gt=0, le=3600, description="backoff cap, seconds")
    factor: float = Field(2.0, ge=1, le=10, description="backoff growth per failure")
    jitter: float = Field(0.2, ge=0, le=1, description="random +- fraction of each delay")


class CaptureRequest(_Strict):
    """What to ask a webcam for; the source logs what the device granted."""

    width: int | None = Field(None, gt=0, le=16384, description="requested width, px")
    height: int | None = Field(None, gt=0, le=16384, description="requested height, px")
    fps: float | None = Field(None, gt=0, le=1000, description="requested frame rate")
    fourcc: str | None = Field(None, min_length=4, max_length=4, description="e.g. MJPG")


_ID_RE = r"^[A-Za-z0-9_.-]{1,64}$"


class SourceConfig(_Strict):
    id: str = Field(pattern=_ID_RE, description="unique source id; the ZeroMQ topic")
    uri: str = Field(
        min_length=1,
        description="file, image dir or glob, rtsp://, http(s)://, webcam index or /dev/videoN",
    )
    type: SourceKind = Field(SourceKind.AUTO, description="auto-detected from uri")
    realtime: bool | None = Field(
        None, description="pace frames at the stream rate (default: true for live sources)"
    )
    loop: bool = Field(False, description="restart a file at its end")
    fps: float | None = Field(None, gt=0, le=1000, description="process at most N frames/s")
    max_frames: int | None = Field(None, gt=0, description="stop after N frames")
    queue_size: int = Field(4, ge=1, le=1024, description="frames buffered before the detector")
    transport: Transport = Field(Transport.TCP, description="RTSP transport")
    open_timeout: float = Field(10.0, gt=0, le=600, description="seconds to open a stream")
    read_timeout: float = Field(10.0, gt=0, le=600, description="seconds for one read")
    stall_timeout: float = Field(10.0, gt=0, le=3600, description="no frame for N s = failed")
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig)
    capture: CaptureRequest = Field(default_factory=CaptureRequest)
    decode_threads: int = Field(0, ge=0, le=64, description="decoder threads; 0 = auto")

    @field_validator("uri", mode="before")
    @classmethod
    def _webcam_index(cls, v: object) -> object:
        # YAML reads `uri: 0` (a webcam index) as an int.
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        return v

    @property
    def kind(self) -> SourceKind:
        """The source kind, resolved from ``uri`` when ``type`` is auto."""
        if self.type is not SourceKind.AUTO:
            return self.type
        return detect_source_kind(self.uri)

    @property
    def live(self) -> bool:
        return self.kind in (SourceKind.RTSP, SourceKind.HTTP, SourceKind.WEBCAM)

    @property
    def paced(self) -> bool:
        return self.live if self.realtime is None else self.realtime

    @model_validator(mode="after")
    def _check_local(self) -> SourceConfig:
        kind = self.kind
        if kind is SourceKind.FILE and not Path(self.uri).is_file():
            raise ValueError(f"uri: file not found: {self.uri}")
        if kind is SourceKind.IMAGES:
            p = Path(self.uri)
            if not (p.is_dir() or any(ch in self.uri for ch in "*?[")):
                raise ValueError(f"uri: image folder not found: {self.uri}")
        return self


def detect_source_kind(uri: str) -> SourceKind:
    """Guess the source kind from a URI.

    >>> detect_source_kind("rtsp://cam/1").value, detect_source_kind("0").value
    ('rtsp', 'webcam')
    >>> detect_source_kind("frames/*.jpg").value
    'images'
    """
    low = uri.lower()
    if low.startswith(("rtsp://", "rtsps://", "rtmp://")):
        return SourceKind.RTSP
    if low.startswith(("http://", "https://")):
        return SourceKind.HTTP
    if uri.isdigit() or low.startswith("/dev/video"):
        return SourceKind.WEBCAM
    if any(ch in uri for ch in "*?[") or Path(uri).is_dir():
        return SourceKind.IMAGES
    return SourceKind.FILE


# --------------------------------------------------------------------------- detector


class Task(str, enum.Enum):
    DETECT = "detect"
    SEGMENT = "segment"
    POSE = "pose"


class MaskFormat(str, enum.Enum):
    RLE = "rle"
    POLYGON = "polygon"
    NONE = "none"


_DEVICE_RE = r"^(auto|cpu|cuda(:\d+)?|tensorrt(:\d+)?|openvino|coreml)$"


class DetectorConfig(_Strict):
    model: Path = Field(description="Ultralytics ONNX export")
    task: Task | None = Field(None, description="overrides the model metadata")
    names: list[str] | dict[int, str] | None = Field(
        None, description="class names; overrides the model metadata"
    )
    imgsz: int | tuple[int, int] | None = Field(
        None, description="input size (h, w) or one side; overrides the metadata"
    )
    kpt_shape: tuple[Annotated[int, Field(ge=1, le=1000)], Literal[2, 3]] | None = Field(
        None,
        description="pose keypoints [K, D]: K per object, D = 2 (x, y) or 3 (x, y, visibility); "
        "overrides the metadata",
    )
    conf: float = Field(0.25, ge=0, le=1, description="minimum confidence")
    iou: float = Field(0.45, ge=0, le=1, description="NMS IoU threshold")
    classes: list[int | str] | None = Field(None, description="keep only these (ids or names)")
    agnostic_nms: bool = Field(False, description="NMS across classes")
    max_det: int = Field(300, ge=1, le=100000, description="detections kept per frame")
    batch: int = Field(1, ge=1, le=64, description="frames per inference call, across sources")
    device: str = Field("auto", pattern=_DEVICE_RE, description="auto|cpu|cuda[:N]|tensorrt|...")
    intra_op_num_threads: int | None = Field(None, ge=1, le=256, description="ORT CPU threads")
    half: bool | None = Field(None, description="TensorRT fp16; default from metadata")
    trt_cache_dir: Path = Field(Path(".cache/edgewatch/trt"), description="TensorRT engines")
    mask_format: MaskFormat = Field(MaskFormat.RLE, description="masks on the wire")
    warmup: bool = Field(True, description="one dummy inference at start")

    @field_validator("model")
    @classmethod
    def _model_exists(cls, v: Path) -> Path:
        if not v.is_file():
            raise ValueError(f"model file not found: {v}")
        return v

    @field_validator("imgsz")
    @classmethod
    def _imgsz_stride(cls, v: int | tuple[int, int] | None) -> int | tuple[int, int] | None:
        sides = (v,) if isinstance(v, int) else (v or ())
        for side in sides:
            if not 32 <= side <= 8192:
                raise ValueError(f"imgsz {side} outside 32..8192")
        return v


# --------------------------------------------------------------------------- trackers


class _TrackerBase(_Strict):
    track_high_thresh: float = Field(0.25, ge=0, le=1, description="first association score")
    track_low_thresh: float = Field(0.1, ge=0, le=1, description="second association score")
    new_track_thresh: float = Field(0.25, ge=0, le=1, description="score to start a track")
    track_buffer: int = Field(
        30, ge=1, le=100000, description="frames a lost track lives (at 30 fps)"
    )
    match_thresh: float = Field(0.8, ge=0, le=1, description="IoU-distance matching threshold")
    fuse_score: bool = Field(True, description="fuse detection score into IoU cost")
    min_hits: int = Field(1, ge=1, le=100, description="frames before a new track is reported")


class ByteTrackConfig(_TrackerBase):
    type: Literal["bytetrack"] = "bytetrack"


class GmcMethod(str, enum.Enum):
    SPARSE_OPT_FLOW = "sparseOptFlow"
    ORB = "orb"
    SIFT = "sift"
    ECC = "ecc"
    NONE = "none"


class BotSortConfig(_TrackerBase):
    type: Literal["botsort"] = "botsort"
    gmc_method: GmcMethod = Field(GmcMethod.SPARSE_OPT_FLOW, description="camera motion method")
    gmc_downscale: int = Field(2, ge=1, le=16, description="downscale frames for GMC")
    proximity_thresh: float = Field(0.5, ge=0, le=1, description="min IoU for ReID matching")
    appearance_thresh: float = Field(
        0.8,
        ge=0,
        le=1,
        description="min appearance similarity: cosine distance / 2 above 1 - this is refused",
    )
    with_reid: bool = Field(False, description="use appearance embeddings")
    model: str = Field("auto", description="ReID ONNX path, or 'auto' = CLIP labeler embeddings")

    @field_validator("model")
    @classmethod
    def _reid_exists(cls, v: str, info: ValidationInfo) -> str:
        if v != "auto" and info.data.get("with_reid") and not Path(v).is_file():
            raise ValueError(f"ReID model file not found: {v} (or use 'auto')")
        return v


class NoTrackerConfig(_Strict):
    type: Literal["none"] = "none"


TrackerConfig = Annotated[
    ByteTrackConfig | BotSortConfig | NoTrackerConfig, Field(discriminator="type")
]


# --------------------------------------------------------------------------- labeler


class CropMode(str, enum.Enum):
    CENTER = "center"
    PAD = "pad"


class LabelerConfig(_Strict):
    model: Path = Field(description="directory with CLIP visual/text ONNX and tokenizer files")
    labels: list[str] = Field(default_factory=list, description="free-text labels")
    groups: dict[str, list[str]] = Field(
        default_factory=dict, description="independent label groups, each classified alone"
    )
    templates: list[str] = Field(
        default_factory=lambda: ["a photo of a {}."], min_length=1, description="prompt templates"
    )
    classes: list[int | str] | None = Field(None, description="detector classes to label")
    every: int = Field(15, ge=1, le=100000, description="frames between crops of one track")
    regrow: float = Field(1.5, ge=1, le=100, description="re-crop early when box area grows x")
    min_size: int = Field(32, ge=1, le=8192, description="skip crops smaller than this, px")
    max_crops_per_frame: int = Field(8, ge=1, le=1024, description="crop budget per frame")
    batch: int = Field(32, ge=1, le=1024, description="crops per encoder call")
    queue_size: int = Field(64, ge=1, le=100000, description="pending crops before dropping")
    window: int = Field(5, ge=1, le=1000, description="probability vectors averaged per track")
    min_score: float = Field(0.3, ge=0, le=1, description="below this the label is 'unknown'")
    crop_mode: CropMode = Field(CropMode.CENTER, description="center crop or pad to square")
    logit_scale: float | None = Field(None, gt=0, le=1000, description="default: model or 100")
    publish_embedding: bool = Field(False, description="put the mean embedding on the wire")
    device: str = Field("auto", pattern=_DEVICE_RE)
    intra_op_num_threads: int = Field(
        1,
        ge=0,
        le=256,
        description="encoder CPU threads (0 = ORT default); 1 leaves cores to the detector",
    )
    nice: int = Field(10, ge=0, le=19, description="Linux niceness of the labeler thread")
    priority: Literal["idle", "nice"] = Field(
        "idle",
        description="idle: Linux SCHED_IDLE, the encoder only gets CPU time detection leaves "
        "(labels come later on a saturated CPU); nice: only the lower niceness",
    )
    cache_dir: Path = Field(Path(".cache/edgewatch/text"), description="text embedding cache")

    @field_validator("model")
    @classmethod
    def _model_exists(cls, v: Path) -> Path:
        if not v.is_dir():
            raise ValueError(f"labeler model directory not found: {v}")
        return v

    @model_validator(mode="after")
    def _some_labels(self) -> LabelerConfig:
        if not self.labels and not self.groups:
            raise ValueError("labels: give at least one label (or groups)")
        for name, group in self.groups.items():
            if not group:
                raise ValueError(f"groups.{name}: empty label list")
        for t in self.templates:
            if "{}" not in t:
                raise ValueError(f"templates: {t!r} has no '{{}}' placeholder")
        return self


# --------------------------------------------------------------------------- sinks


class _SinkBase(_Strict):
    queue_size: int = Field(64, ge=1, le=100000, description="results buffered for this sink")
    sources: list[str] | None = Field(None, description="only these source ids (default all)")


class JsonlSinkConfig(_SinkBase):
    type: Literal["jsonl"] = "jsonl"
    path: str = Field(min_length=1, description="file path; {source} expands to the source id")
    events: bool = Field(True, description="write source events as lines too")
    append: bool = Field(False, description="append to an existing file instead of truncating")


class MotSinkConfig(_SinkBase):
    type: Literal["mot"] = "mot"
    path: str = Field(min_length=1, description="MOT-challenge txt; {source} expands")


class VideoSinkConfig(_SinkBase):
    type: Literal["video"] = "video"
    path: str = Field(min_length=1, description="output video; {source} expands")
    codec: str = Field("h264", description="PyAV codec name")
    fps: float | None = Field(None, gt=0, le=1000, description="default: the source rate")
    crf: int = Field(23, ge=0, le=51, description="quality for x264")
    draw_labels: bool = Field(True, description="draw class, track id and label")

    @field_validator("path")
    @classmethod
    def _container(cls, v: str) -> str:
        ext = Path(v).suffix.lower()
        if ext not in VIDEO_CONTAINERS:
            raise ValueError(
                f"{ext or 'no extension'} is not a known video container "
                f"({' '.join(sorted(VIDEO_CONTAINERS))})"
            )
        return v

    @field_validator("codec")
    @classmethod
    def _encoder(cls, v: str) -> str:
        import av

        try:
            av.codec.Codec(v, "w")
        except (ValueError, av.error.FFmpegError):
            raise ValueError(f"PyAV/FFmpeg has no encoder {v!r}") from None
        return v


VIDEO_CONTAINERS = frozenset(
    {".mp4", ".m4v", ".mkv", ".avi", ".mov", ".webm", ".ts", ".mpg", ".mpeg", ".flv", ".wmv"}
)
"""File extensions a video sink may write (FFmpeg picks the muxer from it)."""


class CurveConfig(_Strict):
    secret_key: Path = Field(description="server secret key file (edgewatch keys generate)")
    authorized_keys: Path | None = Field(
        None, description="file or folder of allowed client public keys; none = any client"
    )


class ZmqSinkConfig(_SinkBase):
    type: Literal["zmq"] = "zmq"
    endpoint: str = Field(
        "tcp://127.0.0.1:5555",
        description="tcp://host:port (port 1-65535, or * to bind any), ipc://path or inproc://name",
    )
    bind: bool = Field(True, description="bind (default) or connect")
    hwm: int = Field(1000, ge=1, le=10_000_000, description="send high-water mark")
    send_image: bool = Field(False, description="third frame: JPEG of the image")
    jpeg_quality: int = Field(80, ge=1, le=100)
    events: bool = Field(True, description="publish source events")
    count_drops: bool = Field(
        True,
        description="XPUB_NODROP: a full subscriber queue drops (and counts) the message for"
        " all subscribers; false: libzmq drops per subscriber, uncounted",
    )
    curve: CurveConfig | None = Field(None, description="CURVE encryption and authentication")
    linger_ms: int = Field(
        1000,
        ge=0,
        le=10_000,
        description="at stop, ms to keep sending queued messages to connected subscribers"
        " (never longer; 0 drops them at once)",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint_form(cls, v: str) -> str:
        check_endpoint(v)
        return v


def check_endpoint(endpoint: str) -> None:
    """Raise ValueError unless ``endpoint`` is a ZeroMQ tcp/ipc/inproc endpoint.

    >>> check_endpoint("tcp://*:5555"); check_endpoint("ipc:///tmp/ew.sock")
    >>> check_endpoint("tcp://127.0.0.1:notaport")
    Traceback (most recent call last):
    ...
    ValueError: endpoint 'tcp://127.0.0.1:notaport': port must be 1-65535 or *, not 'notaport'
    """
    transport, sep, rest = endpoint.partition("://")
    if not sep or transport not in ("tcp", "ipc", "inproc"):
        raise ValueError(
            f"endpoint {endpoint!r}: expected tcp://host:port, ipc://path or inproc://name"
        )
    if not rest:
        raise ValueError(f"endpoint {endpoint!r}: empty {transport} address")
    if transport != "tcp":
        return
    host, colon, port = rest.rpartition(":")
    if not colon or not host or host in ("[]",):
        raise ValueError(f"endpoint {endpoint!r}: expected tcp://host:port")
    if port != "*" and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"endpoint {endpoint!r}: port must be 1-65535 or *, not {port!r}")


class DisplaySinkConfig(_SinkBase):
    type: Literal["display"] = "display"
    window: str = Field("edgewatch", description="window title prefix")
    scale: float = Field(1.0, gt=0, le=8)


SinkConfig = Annotated[
    JsonlSinkConfig | MotSinkConfig | VideoSinkConfig | ZmqSinkConfig | DisplaySinkConfig,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- root


class HealthConfig(_Strict):
    listen: str = Field(
        "127.0.0.1:9108",
        description="host:port or [v6]:port of /healthz and /metrics; port 0 = any free port",
    )

    @field_validator("listen")
    @classmethod
    def _listen_form(cls, v: str) -> str:
        from edgewatch.health import parse_listen  # health imports this module

        try:
            parse_listen(v)
        except ConfigError as e:
            raise ValueError(e.problems[0][1] if e.problems else str(e)) from None
        return v


class LogConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    json_format: bool = Field(False, alias="json", description="one JSON object per log line")


class PipelineConfig(_Strict):
    sources: list[SourceConfig] = Field(min_length=1)
    detector: DetectorConfig
    tracker: TrackerConfig = Field(default_factory=ByteTrackConfig)
    labeler: LabelerConfig | None = None
    sinks: list[SinkConfig] = Field(default_factory=list)
    health: HealthConfig | None = None
    log: LogConfig = Field(default_factory=LogConfig)
    shutdown_timeout: float = Field(10.0, gt=0, le=3600, description="seconds to drain on stop")

    @field_validator("sources")
    @classmethod
    def _unique_ids(cls, v: list[SourceConfig]) -> list[SourceConfig]:
        seen: set[str] = set()
        for s in v:
            if s.id in seen:
                raise ValueError(f"duplicate source id {s.id!r}")
            seen.add(s.id)
        return v


# --------------------------------------------------------------------------- loading

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ITEM_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


MAX_YAML_NODES = 100_000
"""Most YAML nodes a config may expand to, aliases counted at every use."""


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that remembers the line of every mapping key and item.

    It refuses documents whose aliases expand past :data:`MAX_YAML_NODES`
    nodes (a "billion laughs" file of a few hundred bytes would otherwise
    expand to ~10^9 nodes downstream) and recursive aliases.
    """

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node, {}, set())
        return node


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int]) -> int:
    """Nodes in ``node``'s tree with every alias expanded; raise past the limit."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise yaml.composer.ComposerError(
            None, None, "recursive alias (an anchor used inside itself)", node.start_mark
        )
    active.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, memo, active)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, memo, active) + _expanded_size(v, memo, active)
    active.discard(key)
    if size > MAX_YAML_NODES:
        raise yaml.composer.ComposerError(
            None,
            None,
            f"aliases expand to more than {MAX_YAML_NODES} nodes (alias bomb?)",
            node.start_mark,
        )
    memo[key] = size
    return size


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    lines: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        lines[key] = key_node.start_mark.line + 1
    return _Lined(mapping, lines)


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> list[Any]:
    items = [loader.construct_object(child, deep=True) for child in node.value]
    return _LinedList(items, [child.start_mark.line + 1 for child in node.value])


class _Lined(dict[Any, Any]):
    def __init__(self, data: dict[str, Any], lines: dict[Any, int]) -> None:
        super().__init__(data)
        self.lines = lines


class _LinedList(list[Any]):
    def __init__(self, data: list[Any], lines: list[int]) -> None:
        super().__init__(data)
        self.lines = lines


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def format_loc(loc: Sequence[str | int]) -> str:
    """Render a pydantic location as a YAML path.

    >>> format_loc(("sinks", 1, "jsonl", "path"))
    'sinks[1].path'
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS:
            continue  # pydantic puts the discriminator value in the path
        else:
            out += ("." if out else "") + str(part)
    return out


_UNION_TAGS = {"jsonl", "mot", "video", "zmq", "display", "bytetrack", "botsort", "none"}


def _line_of(data: Any, loc: Sequence[str | int]) -> int | None:
    line = None
    node = data
    for part in loc:
        if (
            isinstance(part, str)
            and part in _UNION_TAGS
            and not (isinstance(node, dict) and part in node)
        ):
            continue
        lines = getattr(node, "lines", None)
        try:
            if isinstance(node, list) and isinstance(part, int) and lines is not None:
                line = lines[part]
            elif isinstance(node, dict) and lines is not None and part in lines:
                line = lines[part]
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
    return line


def _interpolate(data: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string scalar."""
    if isinstance(data, dict):
        out_d = _Lined({}, getattr(data, "lines", {}))
        for k, v in data.items():
            out_d[k] = _interpolate(v, f"{path}.{k}" if path else str(k), problems)
        return out_d
    if isinstance(data, list):
        return _LinedList(
            [_interpolate(v, f"{path}[{i}]", problems) for i, v in enumerate(data)],
            getattr(data, "lines", [0] * len(data)),
        )
    if isinstance(data, str) and "${" in data:

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            value = os.environ.get(name)
            if value is None:
                if default is None:
                    problems.append((path, f"environment variable {name} is not set"))
                    return ""
                return default
            _secrets.add(value)
            return value

        return _ENV_RE.sub(repl, data)
    return data


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set key.path=value`` to raw config data (value parsed as YAML).

    >>> d = {"detector": {"conf": 0.25}, "sinks": [{"path": "a"}]}
    >>> apply_override(d, "detector.conf=0.4"); apply_override(d, "sinks[0].path=b")
    >>> d["detector"]["conf"], d["sinks"][0]["path"]
    (0.4, 'b')
    """
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value")
    key, raw = assignment.split("=", 1)
    key = key.strip()
    parts = _parse_key(key)
    try:
        value = load_yaml(raw, name=f"--set {key}") if raw.strip() else ""
    except ConfigError as e:
        raise ConfigError(f"--set {key}: value is not valid YAML", e.problems) from None
    problems: list[tuple[str, str]] = []
    value = _interpolate(value, f"--set {key}", problems)  # ${VAR} as in the file
    if problems:
        raise ConfigError(f"--set {key}: unset environment variable", problems)
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        try:
            if isinstance(node, dict) and part not in node:
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
        except (IndexError, KeyError, TypeError):
            raise ConfigError(f"--set {key}: no such path ({format_loc(parts[: i + 1])})") from None
    last = parts[-1]
    try:
        if isinstance(node, list) and isinstance(last, int) and last == len(node):
            node.append(value)
        else:
            node[last] = value
    except (IndexError, TypeError):
        raise ConfigError(f"--set {key}: no such path") from None


def _parse_key(key: str) -> list[str | int]:
    """Split ``a.b[0].c`` into ``["a", "b", 0, "c"]``; any other shape is a ConfigError."""
    parts: list[str | int] = []
    pos = 0
    while pos < len(key):
        m = _ITEM_RE.match(key, pos)
        if m is None or (m.group(1) is not None and parts and key[pos - 1] != "."):
            raise ConfigError(
                f"--set {key}: bad key at character {pos + 1} ({key[pos:]!r});"
                " expected name.name[index]"
            )
        name, idx = m.group(1), m.group(2)
        parts.append(int(idx) if idx is not None else (int(name) if name.isdigit() else name))
        pos = m.end()
        if pos < len(key) and key[pos] == ".":
            pos += 1
            if pos == len(key):
                raise ConfigError(f"--set {key}: key ends with '.'")
    if not parts:
        raise ConfigError(f"--set {key!r}: empty key")
    return parts


def _load_tracker_file(data: dict[str, Any], name: str) -> None:
    """Let ``tracker:`` be a path to an Ultralytics tracker YAML, or hold ``tracker_type``."""
    tracker = data.get("tracker")
    base = Path(name).parent
    if isinstance(tracker, str):
        p = Path(tracker)
        if not p.is_file() and not p.is_absolute() and (base / p).is_file():
            p = base / p
        if not p.is_file():
            raise ConfigError(
                "tracker file not found", [(f"{name} tracker", f"no such file: {tracker}")]
            )
        tracker = load_yaml(_read_text(p), name=str(p)) or {}
        data["tracker"] = tracker
    if isinstance(tracker, dict) and "tracker_type" in tracker:
        tracker = dict(tracker)
        tracker.setdefault("type", tracker.pop("tracker_type"))
        data["tracker"] = tracker


def parse_config(
    text: str, *, name: str = "<config>", overrides: Sequence[str] = ()
) -> PipelineConfig:
    """Validate config text; raise :class:`ConfigError` naming file, line and key."""
    data = load_yaml(text, name=name)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("config must be a mapping", [(name, "the top level must be a mapping")])
    problems: list[tuple[str, str]] = []
    data = _interpolate(data, "", problems)
    if problems:
        raise ConfigError(
            "unset environment variables",
            [(f"{name} {p}".strip(), m) for p, m in problems],
        )
    for assignment in overrides:
        apply_override(data, assignment)
    _load_tracker_file(data, name)
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError("invalid config", _problems(e, data, name)) from None
    for loc, msg in _sink_problems(cfg):
        line = _line_of(data, loc)
        where = f"{name}:{line}" if line else name
        problems.append((f"{where} {format_loc(loc)}", _mask_msg(msg)))
    if problems:
        raise ConfigError("invalid config", problems)
    return cfg


_ONE_SOURCE_SINKS = ("video", "mot")  # a file of these holds one source's frames


def _sink_problems(cfg: PipelineConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Checks across sinks and sources: unknown source ids, one file written by
    two sinks or two sources, and a sink file that is an input of the run."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    ids = [s.id for s in cfg.sources]
    all_ids = ", ".join(ids)
    inputs = {
        Path(s.uri).resolve(): f"sources[{i}].uri"
        for i, s in enumerate(cfg.sources)
        if s.kind is SourceKind.FILE
    }
    inputs.setdefault(cfg.detector.model.resolve(), "detector.model")
    written: dict[Path, str] = {}
    for i, sink in enumerate(cfg.sinks):
        unknown = [sid for sid in sink.sources or () if sid not in ids]
        if unknown:
            names = ", ".join(map(repr, unknown))
            out.append((("sinks", i, "sources"), f"unknown source id {names} (ids: {all_ids})"))
        path = getattr(sink, "path", None)
        if path is None:
            continue
        loc: tuple[str | int, ...] = ("sinks", i, "path")
        own = [sid for sid in (sink.sources or ids) if sid in ids]
        if sink.type in _ONE_SOURCE_SINKS and "{source}" not in path and len(own) > 1:
            shared = f"{sink.type} sink shared by sources {', '.join(own)}"
            out.append((loc, f"{shared} needs '{{source}}' in its path (one source per file)"))
            continue
        for sid in own:
            target = expand_path(path, sid).resolve()
            if target in inputs:
                out.append((loc, f"{target} is the input {inputs[target]} (would be overwritten)"))
                break
            other = written.get(target)
            if other is not None and other != f"sinks[{i}].path":
                out.append((loc, f"{target} is also written by {other}"))
                break
            written[target] = f"sinks[{i}].path"
    return out


def _problems(e: ValidationError, data: Any, name: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for err in e.errors(include_url=False):
        loc = tuple(err["loc"])
        path = format_loc(loc)
        line = _line_of(data, loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        where = f"{name}:{line}" if line else name
        item = (f"{where} {path}".strip(), _mask_msg(msg))
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _mask_msg(msg: str) -> str:
    return _secrets.mask(msg)


def load_yaml(text: str, *, name: str = "<config>") -> Any:
    """Parse YAML text with line tracking and the alias-expansion limit.

    Every problem (syntax, duplicate key, alias bomb, nesting too deep) is a
    :class:`ConfigError` at ``name:line``.
    """
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        raise ConfigError(
            "invalid YAML", [(where, f"invalid YAML: {getattr(e, 'problem', e)}")]
        ) from None
    except RecursionError:
        raise ConfigError("invalid YAML", [(name, "invalid YAML: nested too deeply")]) from None


def _read_text(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("cannot read config", [(str(p), f"cannot read: {e.strerror}")]) from None
    except UnicodeDecodeError as e:
        line = p.read_bytes()[: e.start].count(b"\n") + 1
        raise ConfigError(
            "config is not UTF-8",
            [(f"{p}:{line}", f"not UTF-8 text (byte 0x{e.object[e.start]:02x} at {e.start})")],
        ) from None


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> PipelineConfig:
    """Read and validate a pipeline YAML file."""
    p = Path(path)
    return parse_config(_read_text(p), name=str(p), overrides=overrides)


def expand_path(template: str, source_id: str) -> Path:
    """Expand ``{source}`` in a sink path template.

    >>> str(expand_path("out/{source}.jsonl", "lobby"))
    'out/lobby.jsonl'
    """
    return Path(template.replace("{source}", source_id))


def as_mapping(cfg: BaseModel) -> Mapping[str, Any]:
    """A plain dict of a config model (for logs; secrets masked by the caller)."""
    return cfg.model_dump(mode="json")
