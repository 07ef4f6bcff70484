"""Project root conftest.

The rig plugin itself is registered through the `pytest11` entry point of the installed
package (`pip install -e .`), so it works the same in any project. This file only anchors the
rootdir, so that `tests.*` helper modules import and reports/ lands at the project root.
"""

# the plugin's own tests drive pytest in-process through pytester
pytest_plugins = ("pytester",)
