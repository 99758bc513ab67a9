"""aq's benchmarks: run them with `make bench`."""
