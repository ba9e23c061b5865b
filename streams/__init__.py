"""The stream worker (Faust): one stage class per source topic, wired to agents by ``app.py``."""
