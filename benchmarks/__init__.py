"""Benchmarks: a generated company run through a whole quarter (``make bench``)."""
