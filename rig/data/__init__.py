"""What the plugin ships besides code: the requirement catalogue, the default limits, the product
profiles and the rig files (the emulated bench, a commented real-bench example).

Found with `importlib.resources`, so an installed wheel reads them exactly as a checkout does. A
user's own file given by path (`--rig`, `--limits`, a profile path in a rig file) overrides.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# pip installs a wheel's package data as plain files, so the resource root is a real directory;
# Path() keeps the rest of the harness (error messages, path arithmetic) on ordinary paths
DATA_DIR = Path(str(files(__name__)))
REQUIREMENTS_FILE = DATA_DIR / "requirements.toml"
LIMITS_DIR = DATA_DIR / "limits"
DEFAULT_LIMITS = LIMITS_DIR / "plugstream.toml"
PROFILES_DIR = DATA_DIR / "profiles"
RIGS_DIR = DATA_DIR / "rigs"
EMULATED_RIG = RIGS_DIR / "emulated.toml"
#: `--rig emulated` (or the ini `rig = emulated`) names the shipped emulated bench
EMULATED = "emulated"
