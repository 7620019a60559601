"""A stand-in for ``python -m hcmiddleware.face.worker`` that speaks its protocol but
misbehaves as told (argv[1]), for the tests of what the caller does then:

- ``die``: ready, then exits (code 3) on the first job without answering;
- ``hang``: ready, then never answers a job;
- ``fail``: exits (code 1) before it is ready.
"""

from __future__ import annotations

import pickle
import struct
import sys
import time

_HEADER = struct.Struct(">I")


def main() -> None:
    mode = sys.argv[1]
    if mode == "fail":
        sys.exit(1)
    out = sys.stdout.buffer
    data = pickle.dumps(("ready", 0))
    out.write(_HEADER.pack(len(data)) + data)
    out.flush()
    head = sys.stdin.buffer.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return
    sys.stdin.buffer.read(_HEADER.unpack(head)[0])
    if mode == "die":
        sys.exit(3)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
