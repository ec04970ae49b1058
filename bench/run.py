"""``make bench``: every benchmark in one run, one table of ratios (printed, Markdown and JSON).

Sections, each in its own child processes: scoring (``bench/scoring.py``), end to end
(``bench/e2e.py``), the point-in-time feature join (``bench/features.py --events --labels``) and the
storage layer (``bench/storage.py --rows``). A section that fails is reported as failed and
the others still run, so one broken engine never hides the rest of the table.

Sizes: the default is chosen to finish in under 15 minutes on a quiet 2-core machine;
``--quick`` in about 4 (both estimated from runs at load 10+); ``--scale X`` (or ``BENCH_SCALE=X``) multiplies every row count.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import e2e, scoring  # noqa: E402
from bench.harness import (RESULTS_DIR, begin, fmt, header_lines, load_average,  # noqa: E402
                           markdown_table, run_child, write_results)

# Default: 5M rows scored 3 times by each of 5 pipelines (~4 min quiet), 3M events end to end,
# the feature join at issue 17's size (2M events, 200k labels, 2 timed runs per contender) and
# the storage benchmark at a fifth of its own default.
SIZES = {
    "default": {"scoring_rows": 5_000_000, "reps": 3, "h2o_rows": 1_000_000, "udf_rows": 100_000,
                "e2e_events": 3_000_000, "features_events": 2_000_000, "features_labels": 200_000,
                "features_reps": 2, "storage_rows": 2_000_000, "storage_reps": 3},
    "quick": {"scoring_rows": 200_000, "reps": 2, "h2o_rows": 100_000, "udf_rows": 20_000,
              "e2e_events": 200_000, "features_events": 200_000, "features_labels": 20_000,
              "features_reps": 1, "storage_rows": 200_000, "storage_reps": 1},
}
SECTIONS = ("scoring", "e2e", "features", "storage")
SECTION_TIMEOUT = 1800


def sizes_for(quick: bool, scale: float) -> dict[str, Any]:
    base = dict(SIZES["quick" if quick else "default"])
    for key in ("scoring_rows", "h2o_rows", "udf_rows", "e2e_events", "features_events", "features_labels",
                "storage_rows"):
        base[key] = max(10_000, int(base[key] * scale))
    return base


# --- sections ---------------------------------------------------------------------------------

def section_scoring(size: dict, work: Path, logs: Path) -> dict[str, Any]:
    result = scoring.run_scoring(size["scoring_rows"], size["reps"], size["h2o_rows"], size["udf_rows"],
                                 work / "scoring", logs, timeout=SECTION_TIMEOUT)
    ratios = []
    for row in result["table"]:
        if row["kind"] not in ("lakescore", "mllib"):
            continue
        ok = row["check_ok"]
        name = row["contender"]
        mine = row["rows_per_s"]
        ratios.append(ratio_row("scoring", f"{name} rows/s", "min(model-only bound, I/O-only bound)",
                                row.get("vs_bound") if ok else None, ">= 0.70", lambda r: r >= 0.70, ok,
                                f"{fmt(mine, 0)} vs {fmt(row.get('bound_rows_per_s'), 0)} rows/s"))
        alternatives = {r["contender"]: r["rows_per_s"] for r in result["table"] if r["kind"] == "alternative"}
        for alt, value in row.get("vs_alternatives", {}).items():
            ratios.append(ratio_row("scoring", f"{name} rows/s", alt, value, "> 1", lambda r: r > 1, ok,
                                    f"{fmt(mine, 0)} vs {fmt(alternatives.get(alt), 0)} rows/s"))
        if row["engine"] == "spark" and row["kind"] == "lakescore":
            per_core = mine / scoring.CORES if ok and mine else None
            memory = result.get("in_memory", {}).get("mojo")
            in_memory = memory["rows_per_s_core"] if memory and ok else None
            ratios.append(ratio_row(
                "scoring", f"{name} rows/s/core, scoring in Spark (cached input -> noop)", "1,000,000 rows/s/core",
                in_memory / 1e6 if in_memory else None, ">= 1", lambda r: r >= 1, ok,
                f"{fmt(in_memory, 0)} rows/s/core (model's own {fmt(memory and memory['model_rows_per_s_core'], 0)}; "
                f"whole job with Parquet + Delta {fmt(per_core, 0)})"))
    failed = [f"{k}: {v.get('error', '')[:300]}" for k, v in result["parts"].items() if not v.get("ok")]
    text = (f"{result['rows']:,} rows in {result['prepared']['files']} files; "
            f"medians of {size['reps']} repetitions\n\n" + scoring.scoring_markdown(result) +
            "\n\n" + scoring.in_memory_markdown(result) +
            "\n\nFixed costs (not in the rates):\n" + "\n".join(scoring.fixed_costs(result["parts"])))
    return {"ok": not failed, "ratios": ratios, "markdown": text, "result": result, "failed": failed}


def section_e2e(size: dict, work: Path, logs: Path) -> dict[str, Any]:
    result = e2e.run_e2e(size["e2e_events"], work / "e2e", logs, timeout=SECTION_TIMEOUT)
    ratios = []
    duck = next((r for r in result["table"] if r["contender"] == "duckdb"), {})
    for row in result["table"]:
        if row["contender"] == "duckdb":
            continue
        ratios.append(ratio_row("end to end", f"{row['contender']} wall (process)", "DuckDB hand-written",
                                row["vs_duckdb_wall"], "-", None, row["ok"],
                                f"{fmt(row['wall_s'], 1)} vs {fmt(duck.get('wall_s'), 1)} s"))
        ratios.append(ratio_row("end to end", f"{row['contender']} work (read → Delta)", "DuckDB hand-written",
                                row["vs_duckdb_work"], "-", None, row["ok"],
                                f"{fmt(row['work_s'], 1)} vs {fmt(duck.get('work_s'), 1)} s"))
    failed = [f"{r['contender']}: {(r['error'] or 'output differs from DuckDB')[:300]}"
              for r in result["table"] if not r["ok"]]
    text = (f"{result['events']:,} events of {result['customers']:,} customers, {result['rows']:,} rows to score, "
            f"9 features (count/sum/mean over 7/30/90 days), GBM 20 trees x depth 5\n\n" + e2e.e2e_markdown(result))
    return {"ok": not failed, "ratios": ratios, "markdown": text, "result": result, "failed": failed}


def run_script(name: str, argv: list[str], logs: Path) -> dict[str, Any]:
    """Another benchmark script in its own process, its output echoed as it comes; its ``RESULT``
    (the script's results; ``ok`` False when it failed) with ``seconds`` and the printed tables."""
    result = run_child(argv, logs / f"{name}.log", SECTION_TIMEOUT, echo="    ")
    result["seconds"] = result["wall_s"]
    text = "\n".join(l for l in result.get("markdown", "").splitlines() if l.startswith("|"))
    if result.get("summary"):
        text += "\n\n" + result["summary"]
    result["tables"] = (f"`{' '.join(argv)}` ({result['seconds']:.0f} s)\n\n" + (text or "(no table printed)"))
    return result


def section_features(size: dict, work: Path, logs: Path) -> dict[str, Any]:
    argv = ["bench/features.py", "--events", str(size["features_events"]), "--labels", str(size["features_labels"]),
            "--reps", str(size["features_reps"]), "--workdir", str(work / "features")]
    result = run_script("features", argv, logs)
    contenders = result.get("contenders", {})
    median = {name: c["seconds"]["median"] for name, c in contenders.items() if c.get("ok")}
    ratios = []
    for engine, e in result.get("engines", {}).items():
        ours, best = e["lakescore"], e["best_hand_written"]
        ok = ours in median
        wanted = e["targets"]
        limit = wanted["vs_hand_written"]
        ratios.append(ratio_row("features", f"lakescore {engine.capitalize()} point-in-time join",
                                f"best hand-written {engine.capitalize()} ({best or '-'}; winner {e['winner'] or '-'})",
                                e["lakescore_vs_best_hand_written"], f"<= {limit}", lambda r, t=limit: r <= t,
                                ok and best is not None, f"{fmt(median.get(ours), 1)} vs {fmt(median.get(best), 1)} s"))
        duckdb = wanted.get("vs_duckdb")
        ratios.append(ratio_row("features", f"lakescore {engine.capitalize()} point-in-time join", "DuckDB SQL",
                                e["lakescore_vs_duckdb"], f"<= {duckdb}" if duckdb else "-",
                                (lambda r, t=duckdb: r <= t) if duckdb else None, ok and "duckdb" in median,
                                f"{fmt(median.get(ours), 1)} vs {fmt(median.get('duckdb'), 1)} s"))
    failed = [] if result["ok"] else [f"features.py: {result.get('error', '')[:300]}"]
    return {"ok": not failed, "ratios": ratios, "markdown": result["tables"], "failed": failed,
            "result": {k: v for k, v in result.items() if k not in ("markdown", "tables")}}


def section_storage(size: dict, work: Path, logs: Path) -> dict[str, Any]:
    (work / "storage").mkdir(parents=True, exist_ok=True)
    argv = ["bench/storage.py", "--rows", str(size["storage_rows"]), "--reps", str(size["storage_reps"]),
            "--workdir", str(work / "storage")]
    result = run_script("storage", argv, logs)
    rows = result.get("rows", [])

    def medians(r: dict) -> str:
        lake, plain = (r.get(k) or {} for k in ("lakescore", "plain"))
        return f"{fmt(lake.get('median'))} vs {fmt(plain.get('median'))} s" if lake and plain else ""

    ratios = [ratio_row("storage", f"lakescore {r['engine']} {r['operation']}", "plain Parquet",
                        r.get("ratio_median"), "<= 1.1", lambda v: v <= 1.1, bool(r.get("checksum_ok")),
                        medians(r))
              for r in rows]
    failed = [] if result["ok"] and rows else [f"storage.py: {result.get('error', 'no rows')[:300]}"]
    return {"ok": not failed, "ratios": ratios, "markdown": result["tables"], "failed": failed,
            "result": {k: v for k, v in result.items() if k not in ("markdown", "tables")}}


RUNNERS = {"scoring": section_scoring, "e2e": section_e2e, "features": section_features,
           "storage": section_storage}


def ratio_row(section: str, measured: str, against: str, value: float | None, target: str,
              meets, check_ok: bool, figures: str = "") -> dict[str, Any]:
    """One line of the combined table; ``figures`` are the two measurements the ratio divides."""
    met = None if meets is None or value is None else bool(meets(value))
    return {"section": section, "measured": measured, "against": against, "ratio": value,
            "target": target, "met": met, "check_ok": bool(check_ok), "figures": figures}


def ratios_markdown(ratios: list[dict]) -> str:
    rows = [[r["section"], r["measured"], r["against"], r.get("figures", ""), fmt(r["ratio"]), r["target"],
             "-" if r["met"] is None else ("yes" if r["met"] else "NO"), "yes" if r["check_ok"] else "NO"]
            for r in ratios]
    return markdown_table(["section", "lakescore", "against", "figures", "ratio", "target", "met",
                           "results checked"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (~3 min)")
    parser.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_SCALE", "1")),
                        help="multiply every row count (default BENCH_SCALE or 1)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--workdir", type=Path, default=None, help="generated data (default: a temporary directory)")
    args = parser.parse_args()

    size = sizes_for(args.quick, args.scale)
    started = time.perf_counter()
    work, facts, stamp = begin(args.workdir, "lakescore-bench-")
    logs = RESULTS_DIR / f"logs-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    header = header_lines(facts)
    print("# lakescore benchmarks " + stamp + (" (quick)" if args.quick else "") + f", scale {args.scale:g}")
    print("# sizes: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:g}" for k, v in size.items()),
          flush=True)
    sections: dict[str, Any] = {}
    for name in args.only:
        print(f"\n## {name} (load {load_average()})", flush=True)
        t = time.perf_counter()
        try:
            sections[name] = RUNNERS[name](size, work, logs)
        except Exception as exc:  # noqa: BLE001 - one broken section must not cost the others
            sections[name] = {"ok": False, "ratios": [], "markdown": f"FAILED: {exc!r}", "failed": [repr(exc)]}
        sections[name]["seconds"] = time.perf_counter() - t
        shutil.rmtree(work / name, ignore_errors=True)
        print(f"## {name}: {sections[name]['seconds']:.0f} s, load {load_average()}", flush=True)
    total = time.perf_counter() - started
    ratios = [r for s in sections.values() for r in s["ratios"]]
    end_load = load_average()
    text = "\n".join([
        f"# lakescore benchmarks, {stamp}" + (" (quick)" if args.quick else ""), "",
        *[f"- {line}" for line in header],
        f"- Load average at end: {end_load}; total {total / 60:.1f} min",
        "- Sizes: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:g}" for k, v in size.items()),
        "", "## Ratios", "", ratios_markdown(ratios), "",
        *[f"## {name} ({s['seconds']:.0f} s)\n\n{s['markdown']}\n" +
          ("".join(f"\nFAILED: {f}" for f in s.get("failed", [])) + "\n" if s.get("failed") else "")
          for name, s in sections.items()],
    ])
    print("\n" + text)
    write_results("bench", stamp, text, facts,
                  {"stamp": stamp, "quick": args.quick, "scale": args.scale, "sizes": size,
                   "load_average_end": end_load, "total_s": total, "ratios": ratios,
                   "sections": {k: {kk: vv for kk, vv in v.items() if kk != "markdown"}
                                for k, v in sections.items()}})
    print(f"logs in {logs}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if all(s["ok"] for s in sections.values()) else 1)


if __name__ == "__main__":
    main()
