"""The runs layer: what a run is, shared by every entry point in ``experiments/``.

- :mod:`.build`: data, network, SGT module, callbacks and loggers from a config;
- :mod:`.compose`: configs composed as the CLI does, for scripts that launch runs;
- :mod:`.files`: a run's folder: config, checkpoint, result names, ``metrics.json``;
- :mod:`.evaluation`: a configured evaluation of a saved run, and its result files;
- :mod:`.checks`: the config checks (the library's own) before anything is written,
  also as a Hydra callback;
- :mod:`.cli`: user errors as one line and exit code 2;
- :mod:`.config_store`: the library's defaults as Hydra config nodes.
Scripts import from here, never from each other.
"""

from experiments.runs.config_store import register_library_defaults

register_library_defaults()
