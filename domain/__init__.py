"""The pure core: entity rules, validation, the job state machine and the Avro codec.

Nothing here imports Kafka, Faust, aiohttp or a database driver; ``api/``, ``streams/`` and
``consumers/`` are thin adapters around it.
"""
