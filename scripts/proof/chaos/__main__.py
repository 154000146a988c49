"""``python scripts/proof/chaos`` (or ``-m scripts.proof.chaos``): the run's command line."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# Run as a directory, Python puts this package's folder first on the path: put the
# repository's root there instead, so ``scripts`` and ``paynow`` are the only names found.
if Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "functions"))

from scripts.proof.chaos.run import main  # noqa: E402

raise SystemExit(main())
