"""Registered in a session that does not use the rig: a test that asks for the rig is told how to
switch the plugin on, instead of pytest's "fixture not found"."""

from __future__ import annotations

import pytest

HOW = ("the PlugStream rig plugin is not active in this session: give --rig PATH (or --rig emulated for "
       "the emulated bench), or set `rig` in the pytest ini")


@pytest.fixture(scope="session")
def rig_session():
    raise pytest.UsageError(HOW)


@pytest.fixture
def rig(rig_session):
    raise pytest.UsageError(HOW)
