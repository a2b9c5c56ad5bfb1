"""Entry points (``python -m experiments.<name>``) and the runs layer they share
(:mod:`experiments.runs`).

Importing the package quiets known harmless third-party messages, each matched narrowly by
its text, so the project's own warnings (and any other library's) stay visible.
"""

import logging
import warnings

# Lightning 2.6 calls a torch pytree API that torch itself has deprecated; nothing to fix here.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(f in record.getMessage() for f in self.fragments)


# Lightning's advertisement for its cloud logger, printed on every run.
for _name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_DropMessages("litlogger"))
