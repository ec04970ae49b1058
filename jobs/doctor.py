"""Check the driver/client and every executor/worker before running on a cluster: Python and
package versions, Java, Spark, the scorer jars, Delta's extension (--delta) and that the lakehouse
is readable and writable from each side. Prints a table; exit 7 naming each mismatch.

    python -m jobs.doctor --engine spark --conf conf/demo.yaml
    ./spark-submit.sh --master spark://host:7077 jobs/doctor.py --conf conf/demo.yaml
    python -m jobs.doctor --engine dask --scheduler tcp://host:8786 --conf conf/demo.yaml
"""

from __future__ import annotations

import sys

from engine.cli import job_parser, run_job


def body(conf, ctx, args) -> None:
    from engine.backend import CanInspectWorkers, open_backend, require
    from engine.environment import (check_java, compare, local_facts, probe_lakehouse,
                                    raise_on_problems, render)
    from engine.session import under_spark_submit

    lakehouse = conf.lakehouse_path()
    options = dict(conf.storage_options)
    reference = local_facts()
    findings = [] if under_spark_submit() else [check_java("driver")]  # else its JVM already runs
    findings += compare(reference, reference, "driver", java=False, jars=True)
    findings.append(probe_lakehouse(lakehouse, options, "driver"))
    if conf.engine == "spark" and not all(f.ok for f in findings if f.check == "java"):
        print(render(findings))  # Spark would not start on this Java: report what is known
        raise_on_problems(findings, "jobs.doctor")
    backend = open_backend(conf.engine, conf, preflight=False)
    try:
        inspect = require(backend, CanInspectWorkers, "jobs.doctor")
        sides = inspect.worker_facts(lakehouse, options)
        for label, facts, probe in sides:
            findings += compare(reference, facts, label, java=True, jars=inspect.workers_load_scorer_jars)
            if probe is not None:
                findings.append(probe)
        findings += inspect.engine_findings(reference, delta=args.delta)
    finally:
        backend.close()
    print(render(findings))
    failed = sum(not f.ok for f in findings)
    print(f"{len(sides)} executor/worker process(es) checked besides the driver; {failed} mismatch(es)")
    raise_on_problems(findings, "jobs.doctor")


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--delta", action="store_true", help="also require Delta's Spark extension")
    return run_job("doctor", parser, body, argv, summary=False)


if __name__ == "__main__":
    sys.exit(main())
