"""The run log: metrics.jsonl (strict JSON, truncated on resume), speed, the per-step records."""

from __future__ import annotations

import json

from igfiqa.config import LoggingConfig
from igfiqa.engine.run_log import METRICS_FILE, MetricsLog, RunLog, Speedometer, truncate_metrics
from igfiqa.engine.run_state import RunState


def _records(path) -> list[dict]:
    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def test_truncation_drops_later_steps_and_a_torn_line(tmp_path) -> None:
    path = tmp_path / METRICS_FILE
    assert truncate_metrics(path, 3) == 0  # no file yet: nothing to do
    lines = [json.dumps({"kind": "train", "step": s}) for s in (0, 2, 3, 4)]
    path.write_text("\n".join(lines) + '\n{"kind": "train", "st')
    assert truncate_metrics(path, 3) == 2
    assert [r["step"] for r in _records(path)] == [0, 2, 3]
    assert truncate_metrics(path, 3) == 0


def test_a_resumed_metrics_log_continues_after_its_step(tmp_path) -> None:
    path = tmp_path / METRICS_FILE
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3)))
    log = MetricsLog(tmp_path, resume_step=2)
    log.write({"step": 3, "loss": float("-inf")})
    log.close()
    log.close()  # closing twice is harmless
    assert _records(path) == [{"step": 1}, {"step": 2}, {"step": 3, "loss": "-inf"}]
    silent = MetricsLog(None, resume_step=0)  # another rank than 0
    silent.write({"step": 4})
    silent.close()
    assert len(_records(path)) == 3


def test_speedometer_rates() -> None:
    speed = Speedometer()
    speed.add(8)
    speed.add(8)
    assert speed.lap() > 0 and speed.last > 0 and speed.window_images == 0
    assert speed.run_images == 16 and speed.run_rate() > 0


def test_run_log_writes_the_records_of_a_run(tmp_path) -> None:
    logging = LoggingConfig(every_steps=2, stderr_every_steps=0)
    state = RunState()
    with RunLog(tmp_path, logging, main=True, progress=False, step=0, limit=3, epochs=1,
                steps_per_epoch=3, resumed=False) as log:  # fmt: skip
        log.start({"kind": "start", "step": 0}, resumed_from=None, batch=8, device="cpu")
        for step, loss in ((1, 2.0), (2, None), (3, 1.5)):
            state.step = step
            if loss is None:
                state.skipped()
            else:
                state.succeeded()
                state.last_metrics = {"loss": loss}
            log.step(state, lr=0.1, skipped=loss is None, images=8, extra={"x": 1.0})
        log.verification(3, {"v": {"accuracy": 0.5}})
        log.end(step=3, epoch=0, stopped="completed", checkpoint=None, images_per_second=1.0)
        log.error(3, "after the end")
    records = _records(tmp_path / METRICS_FILE)
    assert [(r["kind"], r["step"]) for r in records] == [
        ("start", 0), ("nonfinite", 2), ("train", 2), ("train", 3), ("verification", 3),
        ("end", 3), ("error", 3),
    ]  # fmt: skip
    assert records[1] == {"kind": "nonfinite", "step": 2, "epoch": 0, "in_a_row": 1, "total": 1}
    train = records[3]
    assert train["loss"] == 1.5 and train["x"] == 1.0 and train["nonfinite_total"] == 1
    assert train["lr"] == 0.1 and train["images_per_s"] > 0
    assert records[2]["loss"] == 2.0  # the skipped step logs the last good step's metrics
    assert records[4] == {"kind": "verification", "set": "v", "step": 3, "accuracy": 0.5}
    # A resumed run starts no new "start" record and drops the records after its step.
    with RunLog(tmp_path, logging, main=True, progress=False, step=2, limit=3, epochs=1,
                steps_per_epoch=3, resumed=True) as log:  # fmt: skip
        log.start({"kind": "start", "step": 0}, resumed_from=tmp_path, batch=8, device="cpu")
    assert [r["step"] for r in _records(tmp_path / METRICS_FILE)] == [0, 2, 2]
