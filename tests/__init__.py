"""The test suite: unit (pure core), integration (real broker and database), e2e (subprocesses)."""
