"""HTTP gateway (aiohttp): authenticates, validates basics, records the job, publishes chunks.

``app.py`` assembles it from ``services.py``, ``auth.py``, ``intake.py`` and one module per
resource, without a deferred import.
"""
