"""The ``[face]`` section of the configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FaceSettings", "FaceThresholds", "ReferenceSource"]

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


class FaceSettings(BaseModel):
    """Face checks: which backend, the thresholds, and the photo quality limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str = Field("dlib", min_length=1, description="face backend name")
    thresholds: FaceThresholds = Field(default_factory=FaceThresholds)
    min_face_px: int = Field(
        40,
        ge=8,
        description="smallest face accepted, short side in the photo's own pixels; a "
        "~100×125 card photo holds a face of ~50 px",
    )
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
    gallery_engine: Literal["numpy", "faiss", "faiss-fp16", "faiss-sq8"] = Field(
        "numpy",
        description="exact 1:N search engine (same answers); faiss-sq8 is the fastest on "
        "large galleries (a million templates)",
    )
