"""Where the shipped toy world lives. Pure (no torch): the driver resolves model names with it."""
import os
from pathlib import Path

# ERASE_TOYWORLD_DIR points every command at another trained world (tests, retraining).
WEIGHTS = Path(os.environ.get("ERASE_TOYWORLD_DIR") or Path(__file__).with_name("weights"))
