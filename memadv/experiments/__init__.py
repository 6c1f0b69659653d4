"""Planning and submission of experiments: which training runs a sweep, a paper section or the
pipeline needs, and their submission as tasks of :func:`memadv.executors.run_tasks`.

* :mod:`~memadv.experiments.sweep` — sweep files (methods x hyper-parameters x seeds) and single runs;
* :mod:`~memadv.experiments.sec3` — the Section 3.1 / 3.2 training runs;
* :mod:`~memadv.experiments.pipeline` — ``memadv pipeline``: every stage, skipped when up to date.

``memadv.bat`` trains one run and knows nothing of executors; ``memadv.analysis`` reads finished
runs and draws.
"""
