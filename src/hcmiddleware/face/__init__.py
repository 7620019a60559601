"""Face checks (R-FACE): 1:1 at the kiosk, 1:N at enrolment, pluggable backends.

- :mod:`.backend` — the ``FaceBackend`` protocol and ``load_backend(name)``
- :mod:`.dlib_backend` — the default backend on face_recognition (dlib HOG + ResNet)
- :mod:`.settings` — ``FaceSettings``, the ``[face]`` config section
- :mod:`.image`, :mod:`.quality` — decoding, the detection cascade and the quality gates
- :mod:`.detectors` — the cascade's fallback detectors (BlazeFace, dlib's CNN)
- :mod:`.advice` — what the person should change when a live photo is unusable
- :mod:`.kiosk_set` — a kiosk-like face set for tests and benchmarks
- :mod:`.verify` — ``FaceService`` and its ``FaceVerification`` answer (1:1)
- :mod:`.gallery` — ``FaceGallery``, the exact in-memory 1:N index
- :mod:`.store` — ``TemplateStore``, templates encrypted at rest
- :mod:`.enrolment` — ``FaceEnrolment``, store and gallery kept in step

Nothing is imported here, so ``import hcmiddleware`` never needs numpy, Pillow or dlib.
"""
