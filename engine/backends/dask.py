"""Dask: storage through partition-written Parquet + one deltalake commit from the client,
features per entity-hash partition with numpy, Great Expectations per partition combined exactly,
MOJOs scored per partition through JPype (one JVM per worker process)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.backend import (CanConcat, CanCountDefaults, CanInspectWorkers, CanMeasureDrift, CanProfile,
                            CanQuarantine, Capabilities)
from engine.conf import Conf
from engine.session import dask_client
from engine.validation.dask import SUPPORTED_EXPECTATIONS

if TYPE_CHECKING:
    from dask.distributed import Client


@dataclass
class DaskBackend(CanConcat, CanQuarantine, CanProfile, CanMeasureDrift, CanCountDefaults,
                  CanInspectWorkers):
    client: Client
    owns_client: bool = False
    show_progress: bool = True
    name: str = field(default="dask")
    scorer_checked: bool = False
    checked_mojos: set[str] = field(default_factory=set)
    workers_load_scorer_jars = True
    capabilities = Capabilities(expectations=SUPPORTED_EXPECTATIONS, trainer_families=frozenset({"h2o"}))

    @classmethod
    def from_conf(cls, conf: Conf, preflight: bool = True) -> DaskBackend:
        from engine.environment import compare, local_facts, raise_on_problems

        client = dask_client(conf.dask)
        try:
            if conf.dask.scheduler:
                # A cluster of its own: its workers get the scorer jars from this client, and
                # their packages must match this client's before anything is read.
                ship_scorer_jars(client)
            reference = local_facts() if preflight else {}
            findings = [f for label, facts, _ in (_worker_facts(client) if preflight else [])
                        for f in compare(reference, facts, label, java=False)]
            raise_on_problems(findings, f"the Dask workers of {conf.dask.scheduler or 'the local cluster'}")
        except BaseException:
            _close_client(client, owns=True)
            raise
        return cls(client, owns_client=True, show_progress=conf.dask.show_progress)

    @classmethod
    def for_frame(cls, frame: Any) -> DaskBackend:
        """The current Dask client (the one the caller computes with); never closed by us."""
        from distributed import default_client

        return cls(default_client(), owns_client=False, show_progress=False)

    def read(self, table, version=None, columns=None, partitions=None):
        from engine.storage.dask import read_dask

        return read_dask(table, version=version, columns=columns, partitions=partitions)

    def write(self, frame, table, mode, commit):
        from engine.storage.dask import write_dask

        return write_dask(frame, table, mode, commit, progress=self.show_progress)

    def training_set(self, definition, events, spine):
        from engine.features.dask import training_set_dask

        return training_set_dask(definition, events, spine)

    def scoring_set(self, definition, events, as_of, entities=None):
        from engine.features.dask import scoring_set_dask

        return scoring_set_dask(definition, events, as_of, entities)

    def validate(self, frame, suite, table):
        from engine.validation.dask import validate_dask

        return validate_dask(frame, suite, table)

    def profile_columns(self, frame, kinds, max_values):
        from engine.validation.dask import profile_columns_dask

        return profile_columns_dask(frame, kinds, max_values)

    def column_quantiles(self, frame, columns, probabilities):
        from engine.validation.dask import column_quantiles_dask

        return column_quantiles_dask(frame, columns, probabilities)

    def bin_counts(self, frame, edges):
        from engine.validation.dask import bin_counts_dask

        return bin_counts_dask(frame, edges)

    def level_counts(self, frame, columns):
        from engine.validation.dask import level_counts_dask

        return level_counts_dask(frame, columns)

    def count_all_default(self, frame, defaults):
        from engine.validation.dask import count_all_default_dask

        return count_all_default_dask(frame, defaults)

    def quarantine_split(self, frame, rules, constants):
        from engine.validation.dask import quarantine_split_dask

        return quarantine_split_dask(frame, rules, constants)

    def score_mojo(self, frame: Any, mojo_path: str, keep: Sequence[str],
                   constants: Mapping[str, str], missing_columns: str = "na") -> Any:
        from engine.scoring.dask import score_mojo_dask

        self.require_scorer([mojo_path])
        scored = score_mojo_dask(frame, mojo_path, keep, missing_columns=missing_columns)
        return scored.assign(**dict(constants))

    def with_utc_date(self, frame, timestamp_column, name):
        import pandas as pd
        import pyarrow as pa

        def utc_date(part: pd.DataFrame) -> pd.DataFrame:
            # pyarrow casts a zoned timestamp to its local date: make the zone UTC first.
            dates = pa.array(pd.to_datetime(part[timestamp_column], utc=True)).cast(pa.date32())
            return part.assign(**{name: pd.Series(dates, index=part.index,
                                                  dtype=pd.ArrowDtype(pa.date32()))})

        meta = frame._meta.assign(**{name: pd.Series([], dtype=pd.ArrowDtype(pa.date32()))})
        return frame.map_partitions(utc_date, meta=meta)

    def approx_quantiles(self, frame, column, probabilities, where=None):
        for name, value in (where or {}).items():
            frame = frame[frame[name] == value]
        values = frame[column].dropna().astype("float64")
        # Dask's quantile merges per-partition percentiles: approximate, one pass, bounded memory.
        result = values.quantile(list(probabilities)).compute()
        return [None if v != v else float(v) for v in result.tolist()]  # NaN: no values

    def rewrite_files(self, table, files, files_out):
        from engine.storage.dask import rewrite_dask

        return rewrite_dask(table, files, files_out)

    def concat(self, frames):
        import dask.dataframe as dd

        return dd.concat(list(frames))

    def worker_facts(self, lakehouse=None, storage_options=None):
        return _worker_facts(self.client, lakehouse, storage_options)

    def engine_findings(self, reference, delta=False):
        from engine.environment import Finding

        return [Finding("client", "delta extension", "not used by Dask (deltalake writes)", "-", True)] if delta else []

    def require_scorer(self, mojo_paths: Sequence[str] = ()) -> None:
        """Before the first scoring task: every worker has Java 17 for JPype and the scorer
        jars, and can write each MOJO and read it with genmodel in its JVM (``probe_mojo``);
        otherwise ``EnvironmentProblem`` naming the worker, the check and what it found, so no
        task fails halfway and nothing is written."""
        from pathlib import Path

        from engine.environment import SCORER_ADVICE, Finding, compare, local_facts, raise_on_problems
        from engine.scoring.dask import mojo_copy_name, probe_mojo

        pending = [path for path in mojo_paths if path not in self.checked_mojos]
        if self.scorer_checked and not pending:
            return
        reference = local_facts()
        findings = [f for label, facts, _ in _worker_facts(self.client)
                    for f in compare(reference, facts, label, java=True, jars=True)
                    if f.check in ("java", "scorer jars")]
        no_java = {f.host for f in findings if f.check == "java" and not f.ok}
        workers = [address for address in self.client.scheduler_info()["workers"]
                   if f"worker {address}" not in no_java]
        for path in pending:
            data = Path(path).read_bytes()
            name = mojo_copy_name(path, data)
            found = self.client.run(probe_mojo, data, name, workers=workers) if workers else {}
            findings += [Finding(f"worker {address}", f"MOJO {Path(path).name}",
                                 "written and read by genmodel in the worker's JVM", result, result == "loaded")
                         for address, result in sorted(found.items())]
        raise_on_problems(findings, "MOJO scoring on the Dask workers", SCORER_ADVICE)
        self.scorer_checked = True
        self.checked_mojos.update(pending)

    def close(self) -> None:
        _close_client(self.client, self.owns_client)


def _close_client(client: Client, owns: bool) -> None:
    if owns:
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()


def _worker_facts(client: Client, lakehouse: str | None = None,
                  storage_options: Mapping[str, str] | None = None) -> list[tuple[str, dict, Any]]:
    """Every worker's ``local_facts`` (and a lakehouse probe when ``lakehouse`` is given)."""
    from engine.environment import local_facts, probe_lakehouse

    facts = client.run(local_facts)
    out = []
    for address, worker in sorted(facts.items()):
        label = f"worker {address}"
        probe = None
        if lakehouse:
            probe = client.run(probe_lakehouse, lakehouse, dict(storage_options or {}), label,
                               workers=[address])[address]
        out.append((label, worker, probe))
    return out


def ship_scorer_jars(client: Client) -> None:
    """Give every worker (present and future) the scorer jars from this client: a worker
    plugin writes them into the worker's local directory and points ``LAKESCORE_JARS`` there,
    which ``engine.scoring.jars`` prefers, so workers need no build of their own."""
    from engine.scoring.dask import ScorerJars
    from engine.scoring.jars import scorer_jars

    jars = scorer_jars(required=False)
    if jars:
        client.register_plugin(ScorerJars({j.name: j.read_bytes() for j in jars}), name="lakescore-scorer-jars")
