"""Every ```python block of docs/testing.md, docs/calls.md and README.md is a test module,
and it passes.

Each block runs in its own ``pytester`` directory with the installed plugin, warnings as
errors. A block with the comment ``# docs-test: needs sipvicious`` is skipped when the
SIPVicious helpers or tools are missing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "docs" / "testing.md", ROOT / "docs" / "calls.md", ROOT / "README.md")
NEEDS_SIPVICIOUS = "# docs-test: needs sipvicious"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    """(where, code) of every python block: where is "FILE-lineN"."""
    out = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        out += [(f"{doc.stem}-line{text.count(chr(10), 0, m.start()) + 1}", m.group(1))
                for m in BLOCK.finditer(text)]
    return out


def sipvicious_available() -> bool:
    try:
        from responder.testing import sipvicious
    except ImportError:
        return False
    return bool(sipvicious.available())


def test_the_doc_has_examples() -> None:
    found = blocks()
    assert len(found) >= 8
    assert all("def test_" in code for _, code in found), "every block is a test module"


@pytest.mark.parametrize(("line", "code"), blocks(), ids=[where for where, _ in blocks()])
def test_example(pytester: pytest.Pytester, line: str, code: str) -> None:
    if NEEDS_SIPVICIOUS in code and not sipvicious_available():
        pytest.skip("the SIPVicious helpers or tools are not installed")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(**{f"test_docs_{line.replace('-', '_')}": code})
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-W", "error")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 1, result.stdout.str()
    assert not outcomes.get("failed") and not outcomes.get("errors"), result.stdout.str()
