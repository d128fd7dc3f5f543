"""Test-wide settings: offline, no auto-install, a private ultralytics settings dir, a non-interactive plot backend."""

import os
import tempfile

# Set before anything imports ultralytics: these are read once at import time.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yas-ultra-cfg-"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("YOLO_VERBOSE", "false")
