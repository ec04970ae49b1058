"""Great Expectations suites over Spark and Dask frames, with one engine-free report type.

``suite`` holds the definitions and the report (no engine imports); ``spark`` and ``dask`` are
imported only by the backend that uses them.

Spark runs every Great Expectations 1.x core expectation through GE's own Spark engine. Dask
(which GE does not support) runs the types below exactly, over every row, never a sample, with
the same success flags, counts and observed values as Spark (``tests/test_validation_parity.py``);
a suite with any other type is refused before any data is read (the Dask backend declares what it
runs, ``dask.SUPPORTED_EXPECTATIONS``, and ``engine.backend.require_suite`` asks it), naming the type:

============================================================  ==========================================
row-level, GE's pandas engine per partition, counts summed    ``expect_column_values_to_not_be_null``,
                                                              ``expect_column_values_to_be_null``,
                                                              ``expect_column_values_to_be_between``,
                                                              ``expect_column_values_to_be_in_set``,
                                                              ``expect_column_values_to_not_be_in_set``
schema, GE's pandas engine on the frame's empty ``_meta``     ``expect_column_to_exist``,
                                                              ``expect_table_columns_to_match_set``,
                                                              ``expect_table_columns_to_match_ordered_list``,
                                                              ``expect_table_column_count_to_equal``,
                                                              ``expect_table_column_count_to_be_between``
aggregate, one exact distributed metric judged by GE          ``expect_table_row_count_to_be_between``,
                                                              ``expect_table_row_count_to_equal``,
                                                              ``expect_column_values_to_be_unique``,
                                                              ``expect_compound_columns_to_be_unique``,
                                                              ``expect_column_mean_to_be_between``,
                                                              ``expect_column_min_to_be_between``,
                                                              ``expect_column_max_to_be_between``,
                                                              ``expect_column_sum_to_be_between``,
                                                              ``expect_column_proportion_of_non_null_values_to_be_between``,
                                                              ``expect_column_unique_value_count_to_be_between``
type, GE's pandas engine in every partition, verdicts ANDed   ``expect_column_values_to_be_in_type_list``
                                                              (no ``mostly``; list Spark's and pandas'
                                                              names, e.g. ``["LongType", "int64"]``)
============================================================  ==========================================

Two floors, both below the backend: engine-free definitions (``suite``: suites, reports, the
gate, row rules; ``kinds``: column kinds from a Delta schema; ``docs``: Data Docs HTML of a
report), and the engines (``spark``, ``dask``), which import only those. What a run does with the
verdicts (quarantine, guards, profiles, drift) is a policy above the backend
(``engine.policies``).

``row_condition`` is supported on the row-level types only. Row-level types and the two
uniqueness types can quarantine rows (policy ``quarantine``); the others only pass or fail.
"""
