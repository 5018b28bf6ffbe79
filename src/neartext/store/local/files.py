"""Files of a collection directory beside its database: the manifest written atomically, and
the temporary files of killed processes cleared.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_json_atomic(d / "m.json", {"dim": 2}); (d / "m.json").read_text().startswith("{")
    True
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from neartext.util.atomic import TEMP_NAME, staged_file


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, not ours
    return True


def remove_orphan_temp_files(path: Path) -> None:
    """Remove temporary files that a killed process left in ``path`` (``.NAME.tmpPID`` whose
    process is gone). Best effort: a read-only directory is left as it is."""
    with contextlib.suppress(OSError):
        for f in path.iterdir():
            m = TEMP_NAME.match(f.name)
            if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    f.unlink()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` so that readers see either the old or the new file, never half."""
    with staged_file(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
