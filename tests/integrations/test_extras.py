"""Without its framework, an adapter's import names the extra to install."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "framework", "extra"),
    [("langchain", "langchain_core", "langchain"), ("llama_index", "llama_index", "llamaindex")],
)
def test_missing_framework_names_the_extra(module, framework, extra):
    code = (
        f"import sys; sys.modules[{framework!r}] = None\n"
        f"try:\n    import rotaquant.integrations.{module}\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f"rotaquant[{extra}]" in out.stdout
