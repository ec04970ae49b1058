"""The run summary every job ends with: rows in/out, versions written and seconds per stage."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("lakescore")


@dataclass
class StageRecord:
    """One stage on one engine. ``written`` maps a table name to the Delta version committed."""

    stage: str
    engine: str
    seconds: float = 0.0
    rows_in: int | None = None
    rows_out: int | None = None
    written: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    status: str = "ok"
    note: str = ""

    def add_write(self, table: str, location: str | None, rows: int | None, version: int | None,
                  skipped_as: str | None = None) -> None:
        """One write of this stage: ``version`` None means it was skipped (the same commit was
        already in), listed as ``skipped_as`` (default ``table``); ``location`` None leaves the
        table out of ``outputs``; ``rows`` (None: not counted) add to ``rows_out``."""
        if version is None:
            self.skipped.append(skipped_as or table)
        else:
            self.written[table] = version
        if location is not None:
            self.outputs[table] = location
        if rows is not None:
            self.rows_out = (self.rows_out or 0) + rows


@dataclass
class RunSummary:
    run_id: str
    run_dir: str
    stages: list[StageRecord] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, engine: str) -> Iterator[StageRecord]:
        """Time a stage, log its start and end; a failure is recorded and re-raised."""
        record = StageRecord(stage=name, engine=engine)
        self.stages.append(record)
        log.info("stage %s on %s: started", name, engine)
        start = time.perf_counter()
        try:
            yield record
        except BaseException as exc:
            record.status = f"failed: {type(exc).__name__}"
            raise
        finally:
            record.seconds = time.perf_counter() - start
            log.info("stage %s on %s: %s in %.1f s (rows in %s, out %s)", name, engine,
                     record.status, record.seconds, record.rows_in, record.rows_out)

    def render(self) -> str:
        header = ["stage", "engine", "status", "seconds", "rows in", "rows out", "versions written", "note"]
        rows = []
        for s in self.stages:
            written = ", ".join(f"{t}@v{v}" for t, v in s.written.items())
            if s.skipped:
                written = ", ".join(filter(None, [written, *(f"{t} (already committed)" for t in s.skipped)]))
            rows.append([s.stage, s.engine, s.status, f"{s.seconds:.1f}",
                         _fmt(s.rows_in), _fmt(s.rows_out), written or "-", s.note])
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
        out = [f"lakescore run {self.run_id}", line(header), line(["-" * w for w in widths])]
        out += [line(r) for r in rows]
        out.append(f"total {sum(s.seconds for s in self.stages):.1f} s")
        for key, value in self.facts.items():
            out.append(f"{key}: {value}")
        outputs = {k: v for s in self.stages for k, v in s.outputs.items()}
        if outputs:
            out.append("outputs:")
            out += [f"  {k}: {v}" for k, v in outputs.items()]
        return "\n".join(out)

    def save(self, storage_options: dict[str, str] | None = None) -> Path | str:
        """Write ``summary.json`` in the run directory, local or on an object store
        (``engine.storage.files``); return where."""
        from engine.storage.files import join, write_text

        return write_text(join(self.run_dir, "summary.json"),
                          json.dumps(asdict(self), indent=2, default=str), storage_options)


def _fmt(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"
