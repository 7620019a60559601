"""The ``[ward]`` section of the configuration: order rules, alarms, band labels."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hcmiddleware.models import CHECKS, VERIFICATIONS

__all__ = ["AlarmSettings", "LabelSettings", "OrderRule", "WardSettings", "default_rules"]

Check = Literal["before", "during", "after"]
Verification = Literal["bed", "name", "drug", "dose", "concentration", "time", "route"]


class OrderRule(BaseModel):
    """How one order type is checked at the bedside (``[ward.rules.<type>]``).

    The time window is taken around the order's scheduled time, unless the HIS gave
    the order its own window. ``checks`` are the three checks that apply, always passed
    in the order before → during → after; ``verifications`` are those of the seven that
    apply (the others are shown as not applicable).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    minutes_before: int = Field(30, ge=0, le=24 * 60, description="earliest, before schedule")
    minutes_after: int = Field(30, ge=0, le=24 * 60, description="latest, after schedule")
    checks: tuple[Check, ...] = Field(
        cast("tuple[Check, ...]", CHECKS),
        min_length=1,
        description="the checks a bedside execution goes through, in order",
    )
    verifications: tuple[Verification, ...] = Field(
        cast("tuple[Verification, ...]", VERIFICATIONS),
        description="the verifications a scan is checked against",
    )
    second_nurse: bool = Field(False, description="a second nurse must sign the double check")

    @field_validator("checks")
    @classmethod
    def _in_order(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a check is listed twice")
        if "before" not in value:
            raise ValueError("the check before execution always applies")
        return tuple(c for c in CHECKS if c in value)

    @field_validator("verifications")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a verification is listed twice")
        for needed in ("name", "time"):
            if needed not in value:
                raise ValueError(f"the {needed!r} verification always applies")
        return tuple(v for v in VERIFICATIONS if v in value)


def default_rules() -> dict[str, OrderRule]:
    """The rules used for each order type unless ``[ward.rules.<type>]`` replaces them."""
    no_drug: tuple[Verification, ...] = ("bed", "name", "time")
    return {
        # a skin test is read 20 minutes later: the check after execution is that reading
        "skin_test": OrderRule(minutes_before=30, minutes_after=30, second_nurse=True),
        "specimen": OrderRule(
            minutes_before=60, minutes_after=60, checks=("before", "after"), verifications=no_drug
        ),
        "infusion": OrderRule(minutes_before=30, minutes_after=30),
        "injection": OrderRule(minutes_before=30, minutes_after=30),
        "oral": OrderRule(
            minutes_before=60,
            minutes_after=60,
            checks=("before", "after"),
            verifications=("bed", "name", "drug", "dose", "time", "route"),
        ),
        "other": OrderRule(minutes_before=60, minutes_after=60, checks=("before", "after")),
    }


class AlarmSettings(BaseModel):
    """``[ward.alarms]``: escalation of alarms nobody acknowledges; the bands' positions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    escalate_after: float = Field(
        60.0, gt=0, description="seconds an open alarm may wait before it is escalated"
    )
    repeat_every: float = Field(
        60.0, gt=0, description="seconds between further escalations of the same alarm"
    )
    max_level: int = Field(3, ge=1, description="escalations after which it is not repeated")
    check_every: float = Field(1.0, gt=0, le=60, description="seconds between escalation runs")
    locations_every: float = Field(
        1.0,
        gt=0,
        le=60,
        description="seconds between writes of the bands' newest positions to the database "
        "(kept in memory between, and answered from there)",
    )


class LabelSettings(BaseModel):
    """``[ward.labels]``: how a band's label is printed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: Literal["qr", "code128"] = Field("qr", description="the band ID's symbol")
    font: Path | None = Field(
        None, description="TrueType/OpenType font with Chinese glyphs for the PNG label"
    )
    zpl_font: str = Field(
        "E:SIMSUN.TTF", description="the printer-resident font the ZPL label names (^A@)"
    )
    dpi: Literal[203, 300] = Field(203, description="the printer's resolution")
    width_mm: float = Field(25.0, ge=10, le=60, description="printable width of the band")
    length_mm: float = Field(80.0, ge=30, le=300, description="printable length of the label")

    @field_validator("font")
    @classmethod
    def _from_config_folder(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        """A relative font path is taken from the config file's folder."""
        if value is None:
            return None
        from hcmiddleware.config import _resolve_path

        return _resolve_path(value, info)


class WardSettings(BaseModel):
    """``[ward]``: wristbands, the bedside checks' rules, alarms and labels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    band_id_pattern: str = Field(
        r"^[A-Za-z0-9][A-Za-z0-9-]{3,39}$", description="what a band ID looks like"
    )
    rules: dict[str, OrderRule] = Field(default_factory=dict)
    orders_fresh_for: float = Field(
        30.0,
        ge=0,
        le=600,
        description="seconds the HIS's orders are reused for the scans that follow (the "
        "check before execution always asks the HIS); 0: every scan asks the HIS",
    )
    alarms: AlarmSettings = Field(default_factory=AlarmSettings)
    labels: LabelSettings = Field(default_factory=LabelSettings)

    @model_validator(mode="after")
    def _known_types(self) -> WardSettings:
        known = set(default_rules())
        unknown = sorted(set(self.rules) - known)
        if unknown:
            raise ValueError(
                f"no order type {', '.join(unknown)}; the types are {', '.join(sorted(known))}"
            )
        return self

    def rule(self, order_type: str) -> OrderRule:
        """The rule for ``order_type``: the configured one, else the default."""
        if order_type in self.rules:
            return self.rules[order_type]
        defaults = default_rules()
        return defaults.get(order_type, defaults["other"])
