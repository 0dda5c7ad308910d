"""The README stays true: its set-up commands are the ones CI runs, and it names every setting."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

from radius_bridge import config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_readme_opens_with_the_demo_and_test_commands() -> None:
    """The first code block holds exactly the two set-up commands, and CI runs the test one."""
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def _settings(cls: type, prefix: str) -> dict[str, str]:
    """Dotted key -> leaf name, for every field of ``cls`` and of the dataclasses inside it."""
    found = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        key = f"{prefix}.{field.name}"
        if dataclasses.is_dataclass(kind) and isinstance(kind, type):
            found |= _settings(kind, key)
        else:
            found[key] = field.name
    return found


def test_the_readme_names_every_setting() -> None:
    """Every configuration key of every section (clients included) appears in the README."""
    hints = typing.get_type_hints(config.Config)
    missing = []
    for section in (f.name for f in dataclasses.fields(config.Config) if f.name != "source"):
        assert f"`{section}`" in README, f"README has no `{section}` section"
        keys = _settings(hints[section], section)
        if section == "radius":
            keys |= _settings(config.ClientConfig, "radius.clients[]")
        for key, name in keys.items():
            if f"`{name}`" not in README and f"`{key}`" not in README:
                missing.append(key)
    assert not missing, f"README does not mention: {missing}"
