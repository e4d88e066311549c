"""The README stays accurate: every spec field, environment field and CLI command is documented, and
the quick start is exactly two commands."""

from __future__ import annotations

import re

from daemon.cli.main import build_parser
from daemon.core.kinds import KINDS, load_object
from daemon.schema.environment import EnvironmentSpec
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_top_level_spec_field_is_documented():
    missing = []
    for kind in KINDS:
        for name, field in load_object(kind.spec_model).model_fields.items():
            if not re.search(rf"\b{re.escape(field.alias or name)}\b", README):
                missing.append(f"{kind.name}.{field.alias or name}")
    assert missing == []


def test_every_environment_field_is_documented():
    missing = []
    for name, field in EnvironmentSpec.model_fields.items():
        sub = getattr(field.annotation, "model_fields", {})
        missing += [f"{name}.{s}" for s in sub if f"`{s}`" not in README]
        if f"`{name}`" not in README:
            missing.append(name)
    assert missing == []


def test_every_cli_command_and_flag_is_documented():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for command, subparser in sub.choices.items():
        assert f"specd {command}" in README, command
        for action in subparser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag not in ("--help",):
                    assert flag in README, f"specd {command} {flag}"


def test_quick_start_is_two_commands():
    section = README.split("## Quick start", 1)[1].split("##", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.strip().splitlines() if line.strip()]
    assert len(commands) == 2
    assert commands[1].split("#")[0].strip() == "bash .ci/run"
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest -q" in ci and "`.venv/bin/python -m pytest -q`" in README
