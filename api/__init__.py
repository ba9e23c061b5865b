"""HTTP gateway (aiohttp): authenticates, validates basics, records the job, publishes chunks."""
