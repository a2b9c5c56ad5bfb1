"""The README's library example runs as written."""

import re

from tests.conftest import ROOT


def test_readme_library_example_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- example -->\s*```python\n(.*?)```", readme, re.S)
    assert len(blocks) == 1, "README must hold exactly one <!-- example --> python block"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["trainer"].global_step > 0
