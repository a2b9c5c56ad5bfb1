"""Downloads that create nothing in the data folder unless they succeed.

torchvision's downloaders create their folders before fetching, so a failed download
(offline, a proxy) would leave empty folders in a data folder the user treats as read-only.
Here they run in a temporary folder; only the finished files are moved into place.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path


def download_into(data_dir: Path, fetch: Callable[[Path], object], keep: Sequence[str]) -> None:
    """``fetch(tmp)`` downloads into ``tmp``; then each path of ``keep`` (relative to it)
    moves to the same place under ``data_dir``. Any error leaves ``data_dir`` untouched."""
    with tempfile.TemporaryDirectory(prefix="sgt-download-") as tmp:
        fetch(Path(tmp))
        for relative in keep:
            target = data_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(Path(tmp) / relative), str(target))
