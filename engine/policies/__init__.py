"""What a run does with validation's verdicts and figures: the floor above the backend.

Validation itself (``engine.validation``) has two floors below the backend: engine-free suites,
reports and rules (``suite``, ``kinds``, ``docs``), and the engines that evaluate them
(``spark``, ``dask``), which import only the first. The policies here drive a backend through
its protocol and capabilities, never an engine module, and write their tables through the one
write protocol (``engine.storage.batch.write_batch``) like every other table:

* ``quarantine``: policy ``quarantine``, failed row-level checks → the quarantine table;
* ``guards``: garbage-in guards (label column, empty events, stale as-of times, all-default rows);
* ``profile``: an exact table profile → a starting suite (``jobs/profile_table.py``);
* ``drift``: PSI and null rates, scoring vs training → the drift metrics table.
"""
