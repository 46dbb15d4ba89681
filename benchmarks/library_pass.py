"""One checkout's side of ``python -m benchmarks.compare --library``: the library's CPU time over the portraits.

Loads ``FaceGender()`` with the settings the environment and the checkout's defaults give, reads 20 portraits to
warm up, then prints ``ready``; for each line ``pass`` on standard input it reads every portrait once (encoded
bytes, one photo at a time) and prints the CPU seconds that took this process (``time.process_time``).
"""

from __future__ import annotations

import sys
import time

from facegender import FaceGender
from facegender.data import load_dataset

from .common import SHARED

WARM_UP_PHOTOS = 20
READY = "ready"
PASS = "pass"


def main() -> int:
    photos = [item.path.read_bytes() for item in load_dataset(SHARED / "portraits")]
    face_gender = FaceGender()
    for photo in photos[:WARM_UP_PHOTOS]:
        face_gender.predict(photo)
    print(READY, flush=True)
    for line in sys.stdin:
        if line.strip() != PASS:
            print(f"unknown command {line.strip()!r}", file=sys.stderr)
            return 2
        started = time.process_time()
        for photo in photos:
            face_gender.predict(photo)
        print(f"{time.process_time() - started:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
