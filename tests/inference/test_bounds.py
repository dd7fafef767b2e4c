"""Every resource a user sets has a bound that fits the machine (issue 25, item 12): the network's
threads, the decode threads and the face search's size are refused beyond it, before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from igfiqa.cli import app
from igfiqa.cli.options import threads_option, workers_option
from igfiqa.errors import ConfigError
from igfiqa.inference import pipeline, runners

runner = CliRunner()


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with 2 cores available, whatever runs the tests."""
    monkeypatch.setattr(pipeline, "available_cores", lambda: 2)


def _tiny_onnx(path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    helper, proto = onnx.helper, onnx.TensorProto
    image = helper.make_tensor_value_info("image", proto.FLOAT, ["b", 3, 4, 4])
    embedding = helper.make_tensor_value_info("embedding", proto.FLOAT, ["b", 48])
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["embedding"])], "g", [image], [embedding]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path.write_bytes(model.SerializeToString())
    return path


def test_available_cores_follows_the_affinity_mask() -> None:
    import os

    cores = pipeline.available_cores()
    assert 1 <= cores <= (os.cpu_count() or cores)
    if hasattr(os, "sched_getaffinity"):
        assert cores == len(os.sched_getaffinity(0))


def test_network_threads_beyond_the_cores_are_refused(two_cores, tmp_path: Path) -> None:
    assert runners.check_threads(None) is None and runners.check_threads(0) is None  # default
    assert runners.check_threads(2) == 2
    for bad in (3, 256, -1):
        with pytest.raises(ConfigError, match=rf"--threads {bad} .*2 CPU cores"):
            runners.check_threads(bad)
    # onnxruntime: refused before the file is even opened (not a CheckpointError for a missing one).
    pytest.importorskip("onnxruntime")
    with pytest.raises(ConfigError, match="--threads 256"):
        runners.OnnxRunner(tmp_path / "missing.onnx", threads=256)
    model = _tiny_onnx(tmp_path / "tiny.onnx")
    options = runners.OnnxRunner(model).session.get_session_options()
    assert options.intra_op_num_threads == 2  # the default: the cores available, not cpu_count()
    options = runners.OnnxRunner(model, threads=1).session.get_session_options()
    assert options.intra_op_num_threads == 1


def _probe_app(option) -> tuple[typer.Typer, list[object]]:
    ran: list[object] = []
    probe = typer.Typer()

    @probe.command()
    def main(value: int | None = option) -> None:
        ran.append(value)

    return probe, ran


def test_threads_option_exits_2_before_any_work(two_cores) -> None:
    probe, ran = _probe_app(threads_option())
    result = runner.invoke(probe, ["--threads", "256"])
    assert result.exit_code == 2 and not ran
    assert "--threads 256" in result.output and "2 CPU" in result.output
    assert runner.invoke(probe, ["--threads", "2"]).exit_code == 0 and ran == [2]


def test_decode_workers_are_bounded_by_cores_and_memory(two_cores, monkeypatch) -> None:
    assert pipeline.max_workers() <= pipeline.WORKERS_PER_CORE * 2
    assert pipeline.check_workers(pipeline.max_workers()) == pipeline.max_workers()
    assert pipeline.check_workers(0) == 0 and pipeline.check_workers(None) is None
    with pytest.raises(ConfigError, match=r"--workers 10000 .* at most 8 decode threads"):
        pipeline.check_workers(10_000)
    # Memory: with 2 GiB, half of it holds 8 decoded 120 MB images, not 8 of them plus more.
    import igfiqa.data.decode as decode

    monkeypatch.setattr(pipeline, "machine_memory", lambda: 2 << 30)
    assert pipeline.max_workers() == (1 << 30) // (3 * decode.MAX_PIXELS) == 8
    monkeypatch.setattr(pipeline, "machine_memory", lambda: 1 << 30)
    assert pipeline.max_workers() == 4 and pipeline.default_workers() == 2
    # The Python API refuses too, before preparing any item.
    called: list[int] = []
    with pytest.raises(ConfigError, match="--workers 9"):
        list(pipeline.ordered_map(called.append, [1, 2, 3], workers=9))
    assert not called


def test_workers_option_exits_2_before_any_work(two_cores, tmp_path: Path) -> None:
    probe, ran = _probe_app(workers_option())
    result = runner.invoke(probe, ["--workers", "10000"])
    assert result.exit_code == 2 and not ran and "--workers 10000" in result.output
    assert runner.invoke(probe, ["--workers", "8"]).exit_code == 0 and ran == [8]
    # igfiqa align: refused at parsing, nothing written.
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"not read")
    out = tmp_path / "out"
    result = runner.invoke(app, ["align", str(photo), "-o", str(out), "--workers", "10000"])
    assert result.exit_code == 2 and "--workers 10000" in result.output and not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--max-side", "100000"],
        ["--max-side", "4000", "--min-face", "8"],
        ["--min-face", "8", "--max-side", "4000"],  # either order
        ["--max-side", "4001"],  # with the default --min-face 20: 200 x 20 = 4000 at most
    ],
)
def test_align_max_side_beyond_its_bound_exits_2(args: list[str], tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"not read")
    out = tmp_path / "out"
    result = runner.invoke(app, ["align", str(photo), "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    assert "--max-side" in result.output and not out.exists()


def test_align_max_side_within_its_bound_is_accepted(tmp_path: Path) -> None:
    # Parsing passes; the run then fails on the input (not an image), so no detector is needed.
    out = tmp_path / "out"
    for args in (["--max-side", "4000"], ["--max-side", "1600", "--min-face", "8"]):
        result = runner.invoke(app, ["align", str(tmp_path / "missing.png"), "-o", str(out), *args])
        assert "--max-side" not in result.output, result.output


def test_ordered_map_default_still_runs(two_cores) -> None:
    outcomes = list(pipeline.ordered_map(lambda x: x * 2, range(5)))
    assert [o.value for o in outcomes] == [0, 2, 4, 6, 8]
    assert np.all([o.error is None for o in outcomes])
