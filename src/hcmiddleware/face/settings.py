"""The ``[face]`` section of the configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FaceDetection", "FaceSettings", "FaceThresholds", "ReferenceSource"]

#: What a live photo is checked against: the photo on the card (DDF1/EF07, a small
#: low-resolution JPEG) or a template enrolled at the counter.
ReferenceSource = Literal["card_photo", "enrolled"]


class FaceThresholds(BaseModel):
    """Largest distance still accepted as the same person, per reference source.

    Distances are Euclidean between unit-length templates (0..2); face_recognition's
    customary 0.6 on its raw descriptors is about 0.41 here. The defaults are for the
    ``dlib`` backend and the test pairs of docs/face.md, where one person's photos
    (crops, rotation, light, noise, card-photo size) were at most 0.24 apart and two
    people at least 0.39: they lean to the strict side, because a false accept lets
    someone use another person's card, while a false reject only sends the resident to
    the counter. ``duplicate`` (1:N at enrolment) is looser: a hit there is put to a
    person for review, and a missed duplicate is a second record.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    card_photo: float = Field(0.34, gt=0.0, le=2.0, description="live photo vs card photo")
    enrolled: float = Field(0.32, gt=0.0, le=2.0, description="live photo vs enrolled template")
    duplicate: float = Field(
        0.36, gt=0.0, le=2.0, description="1:N at enrolment: closer than this is a duplicate"
    )

    def for_source(self, source: ReferenceSource) -> float:
        """The threshold used for ``source``."""
        return self.card_photo if source == "card_photo" else self.enrolled


class FaceDetection(BaseModel):
    """The detection cascade: dlib's HOG first, then a stronger detector.

    1. ``hog``: HOG on the photo as it is (photos whose short side is at least 320 px);
    2. ``hog-upsampled``: HOG on the photo doubled once or twice, for photos no longer
       than ``hog_upsample_max_side`` (a card photo: its face is ~50 px, HOG's window
       ~80 px). Doubling a kiosk frame costs ~4× the time, so by default it is not;
    3. the ``fallback`` detector, when HOG found no face at all: ``blazeface`` (~10 ms,
       sees the photo at 192×192), ``cnn`` (dlib's CNN on the photo scaled to
       ``fallback_max_side``, 0.3–1 s on a CPU) or ``none``. With ``refine``, HOG is
       asked again on a crop around what the fallback found, enlarged so the face is
       ~100 px, and its box is used when it agrees (the encoder's landmarks were
       trained on HOG's boxes);
    4. ``hog-crop``: when BlazeFace found no face, HOG on crops around its best
       ``weak_guesses`` guesses scoring at least ``weak_min_score``, enlarged so the
       guess is ~100 px (~5 ms each): a face HOG finds there is used;
    5. ``hog-upsampled`` again, as a last resort, for larger photos (up to
       ``last_resort_max_side``) in which nothing was found yet: slow (~150 ms for a
       640×480 frame) but it finds small faces the tiers before miss.

    A face found by the fallback passes the same gates (one face, ``min_face_px``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    hog_upsample_max_side: int = Field(
        320,
        ge=0,
        le=2000,
        description="photos at most this long (pixels, long side) get HOG with upsampling; "
        "0: never",
    )
    fallback: Literal["blazeface", "cnn", "none"] = Field(
        "blazeface", description="detector asked when HOG finds no face"
    )
    fallback_min_score: float | None = Field(
        None,
        ge=0.0,
        le=10.0,
        description="the fallback's score a face needs; default 0.5 for blazeface (0..1), "
        "0.0 for cnn (its confidence)",
    )
    fallback_max_side: int = Field(
        320, ge=64, le=1024, description="cnn: the photo is scaled to this long side first"
    )
    refine: bool = Field(True, description="HOG on a crop around the fallback's face")
    weak_guesses: int = Field(
        3,
        ge=0,
        le=10,
        description="blazeface only: when it finds no face, HOG looks on enlarged crops "
        "around its best this many weak guesses (tier hog-crop); 0: never",
    )
    weak_min_score: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="blazeface only: the score a weak guess needs to be looked at",
    )
    last_resort_max_side: int = Field(
        800,
        ge=0,
        le=2000,
        description="when nothing was found yet (the fallback, its weak guesses), HOG on "
        "the photo doubled, for photos at most this long (~150 ms for 640×480); 0: never",
    )

    def min_score(self) -> float:
        """The fallback's score threshold in force."""
        if self.fallback_min_score is not None:
            return self.fallback_min_score
        return 0.5 if self.fallback == "blazeface" else 0.0


class FaceSettings(BaseModel):
    """Face checks: which backend, the thresholds, and the photo quality limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str = Field("dlib", min_length=1, description="face backend name")
    thresholds: FaceThresholds = Field(default_factory=FaceThresholds)
    min_face_px: int = Field(
        32,
        ge=8,
        description="smallest face accepted in a live or probe photo, short side in the "
        "photo's own pixels; on the kiosk set faces of 38 px still matched (docs/face.md)",
    )
    compressed_min_face_px: int = Field(
        48,
        ge=8,
        description="smallest face accepted in a live or probe JPEG of a quality below "
        "compressed_below_quality: on the kiosk set 38-px faces at JPEG quality 12 were "
        "the false rejects, 52-px ones matched",
    )
    compressed_below_quality: int = Field(
        25,
        ge=0,
        le=100,
        description="JPEG quality (IJG scale, read from the file's tables) below which "
        "compressed_min_face_px applies; 0: never",
    )
    reference_min_face_px: int = Field(
        32,
        ge=8,
        description="smallest face accepted in a reference photo (a card photo cannot be "
        "taken again, and a 102×126 one holds a face of 44–64 px)",
    )
    detection: FaceDetection = Field(default_factory=FaceDetection)
    max_image_side: int = Field(
        800,
        ge=64,
        description="photos larger than this (long side) are scaled down before detection, "
        "which bounds the time a check takes",
    )
    max_image_pixels: int = Field(
        40_000_000,
        ge=10_000,
        description="photos with more pixels are refused without decoding them",
    )
    reference_worker: bool = Field(
        True,
        description="check and encode a reference (card) photo in a warm helper process "
        "while the live photo is checked here: a first check then costs about one "
        "photo's time, not two (built-in dlib backend only)",
    )
    worker_timeout: float = Field(
        10.0,
        gt=0.0,
        le=300.0,
        description="seconds the helper process may take for a reference photo before the "
        "check fails (FaceBackendError) and the process is restarted",
    )
    gallery_engine: Literal["numpy", "faiss", "faiss-fp16", "faiss-sq8"] = Field(
        "numpy",
        description="exact 1:N search engine (same answers); faiss-sq8 is the fastest on "
        "large galleries (a million templates)",
    )
