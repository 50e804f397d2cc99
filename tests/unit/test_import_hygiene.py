"""The engine knows no screen: importing it must not import textual or rich."""

from __future__ import annotations

import subprocess
import sys

ENGINE_MODULES = [
    "rbmigrate.engine",
    "rbmigrate.engine.api",
    "rbmigrate.engine.plan",
    "rbmigrate.source",
    "rbmigrate.target.schema",
    "rbmigrate.target.postgres",
    "rbmigrate.records",
    "rbmigrate.config",
    "rbmigrate.events",
    "rbmigrate.embeddings",
    "rbmigrate.demo",
    "rbmigrate.storage",
]


def test_engine_imports_neither_textual_nor_rich():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in ENGINE_MODULES)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        + "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"engine pulled in: {out.stdout.strip()}"


def test_the_cli_does_use_rich():
    """Guard against the hygiene test passing because nothing imports rich at all."""
    code = "import sys, rbmigrate.cli; print('rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
