"""Makes this folder's helper module (pose_synthetic) importable from its tests under --import-mode=importlib."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
