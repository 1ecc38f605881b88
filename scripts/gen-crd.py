#!/usr/bin/env python3
"""Write helm/sloexporter/crds/servicelevels.yaml from the native spec's pydantic model.

Run after changing sloexporter/specs/native.py; tests/test_crd.py fails until you do.
`--check` exits 1 when the file differs from what would be written.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sloexporter.crd import render  # noqa: E402

TARGET = ROOT / "helm" / "sloexporter" / "crds" / "servicelevels.yaml"

if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv[1:]:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run scripts/gen-crd.py",
                  file=sys.stderr)
            sys.exit(1)
        sys.exit(0)
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
