"""Benchmarks, each beside a PostgreSQL COPY baseline measured in the same run.

``bench_peer`` (ours beside the Kafka Connect + Debezium JDBC sink peer, the headline),
``bench_pipeline`` (a JSON job and a sync call), ``bench_import`` (a large CSV import), ``ab``
(two versions alternating), ``isolation_cost`` (the failure path of one persist batch);
``processes`` finds a side's processes through /proc to pause them and read their CPU time.
"""
