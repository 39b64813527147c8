"""The bench harness: what every ``bench/bench_*.py`` driver shares.

- ``output``: progress on stderr (``log``), the command line, the one JSON answer on stdout (``emit``);
- ``django_env``: Django pointed at the bench's own database (created and migrated), raw SQL,
  the server's version and settings, the machine the figures were measured on (``environment``);
- ``stats``: timing (``timed``, ``sample``), percentiles and medians, ratios against a target;
- ``procs``: child processes in their own process group (``Proc``, ``Processes``), free ports,
  what /proc says about a process (CPU seconds, RSS, children);
- ``cpu``: ``CpuMeter``, where the machine's CPU went during a part, per role;
- ``data``: the demo minute bars every market-data bench loads (time-ordered windows, CSV files)
  and the description of what a run used (``market_data_info``);
- ``spec``: the original spec's ingester and its table, the baseline of the ingest figures.

A driver runs as ``python bench/bench_x.py``; its preamble puts the repository first on ``sys.path``
so ``bench.lib`` and the project's packages resolve to this checkout. No driver imports another.
"""
