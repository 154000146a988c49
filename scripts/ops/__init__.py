"""The commands of ``scripts/paynow-ops`` (the CLI itself is ``scripts/ops/cli.py``).

Importing the package puts ``functions/`` on the path, so the commands use
the pipeline's own config, documents and adapters.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "functions") not in sys.path:
    sys.path.insert(0, str(ROOT / "functions"))
