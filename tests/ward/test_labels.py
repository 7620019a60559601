"""A band's label: ZPL for the wristband printer, PNG for anything else."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from hcmiddleware.errors import LabelError
from hcmiddleware.ward.labels import LabelFields, png_label, zpl_label
from hcmiddleware.ward.settings import LabelSettings

from .conftest import Stay

FIELDS = LabelFields(
    wristband_id="WB-0001",
    name="张^三_~",
    sex="男",
    age="35岁",
    ward="5A",
    bed="12",
    admission_id="A0001",
)


def test_the_zpl_label_names_the_band_and_the_patient(stay: Stay) -> None:
    zpl = stay.mw.ward.label(stay.band, kind="zpl").decode("utf-8")
    assert zpl.startswith("^XA")
    assert zpl.rstrip().endswith("^XZ")
    assert "^CI28" in zpl  # UTF-8 text
    assert "^BQN,2," in zpl
    assert "^FDMA,WB-0001^FS" in zpl
    name = stay.mw.residents.get(stay.mw.ward.binding(stay.band).resident_id).name
    assert name in zpl
    assert "12 床" in zpl
    assert "5A 病区" in zpl


def test_zpl_command_characters_in_text_are_escaped() -> None:
    zpl = zpl_label(FIELDS, LabelSettings(symbol="code128"))
    assert "张_5E三_5F_7E" in zpl
    assert "^BCR," in zpl
    assert "^FD张^三" not in zpl


def test_the_png_label_is_an_image_of_the_band_size(stay: Stay) -> None:
    png = stay.mw.ward.label(stay.band, kind="png")
    image = Image.open(io.BytesIO(png))
    assert image.size == (round(80 * 203 / 25.4), round(25 * 203 / 25.4))
    dark = sum(image.convert("L").histogram()[:128])
    assert dark > 1000  # symbol and text are drawn


def test_qr_and_code128_labels_differ_and_depend_on_the_band() -> None:
    qr = png_label(FIELDS, LabelSettings())
    other = png_label(
        LabelFields(**{**FIELDS.__dict__, "wristband_id": "WB-0002"}), LabelSettings()
    )
    code128 = png_label(FIELDS, LabelSettings(symbol="code128"))
    assert len({qr, other, code128}) == 3


def test_no_font_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LabelError) as caught:
        png_label(FIELDS, LabelSettings(font=tmp_path / "missing.ttf"))
    assert "font" in caught.value.hint
