"""`make demo`: show what colonynode can do on this machine today.

It grows with the project: the end-to-end issue makes it a real three-daemon colony.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def main() -> int:
    steps = [[str(BIN / "colonynode"), "--version"]]
    for cmd in steps:
        print("$", " ".join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd)))
        result = subprocess.run(cmd, check=False)
        if result.returncode != 0:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
