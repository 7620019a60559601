"""How alike two Chinese names sound and look: simplified/traditional, pinyin, polyphones.

Names are typed through pinyin input methods, so the commonest error is a homophone
(王芳 for 王方); dialect speakers fold zh/z, ch/c, sh/s, n/l and -ng/-n; traditional
characters come from Hong Kong, Macao and Taiwan documents (張 for 张). Polyphonic
characters (曾 zēng/céng, 单 shàn/dān) are compared on every reading, so a record
typed from speech matches whichever reading was meant.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

__all__ = [
    "fuzzy_syllable",
    "is_chinese",
    "name_key",
    "readings",
    "to_simplified",
]


@lru_cache(maxsize=1)
def _t2s() -> Any:
    # opencc and pypinyin load their dictionaries on import (pypinyin's phrase table takes
    # about half a second): only the resident index needs them, not every 'hcm' command
    import opencc

    return opencc.OpenCC("t2s")


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
# Folds that Mandarin speakers from the south make, and pinyin typists with them.
_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("l", "n"))
_FINALS = (("ang", "an"), ("eng", "en"), ("ing", "in"))
# Polyphonic characters read differently as a surname than in running text.
_SURNAME_READINGS = {
    "曾": "zeng1", "单": "shan4", "解": "xie4", "仇": "qiu2", "区": "ou1", "查": "zha1",
    "朴": "piao2", "覃": "qin2", "盖": "ge3", "乐": "yue4", "缪": "miao4", "翟": "zhai2",
    "种": "chong2", "秘": "bi4", "繁": "po2", "员": "yun4", "召": "shao4", "句": "gou1",
    "尉": "yu4", "长": "zhang3", "万": "wan4", "莫": "mo4", "宿": "su4", "纪": "ji3",
}  # fmt: skip


def is_chinese(text: str) -> bool:
    """True when the text contains Chinese characters (CJK unified ideographs)."""
    return bool(_CJK.search(text))


@lru_cache(maxsize=65536)
def to_simplified(text: str) -> str:
    """Traditional to simplified (OpenCC) after NFKC, spaces dropped; Latin upper-cased."""
    text = unicodedata.normalize("NFKC", text).strip()
    if is_chinese(text):
        # Spaces inside a Chinese name are typing noise (王 芳 is 王芳).
        return str(_t2s().convert("".join(text.split()))).upper()
    return " ".join(text.upper().split())


@lru_cache(maxsize=8192)
def fuzzy_syllable(syllable: str) -> str:
    """A toneless syllable with the z/zh, c/ch, s/sh, n/l, -n/-ng confusions folded."""
    out = syllable.rstrip("12345")
    for long, short in _INITIALS:
        if out.startswith(long):
            out = short + out[len(long) :]
            break
    for long, short in _FINALS:
        if out.endswith(long):
            out = out[: -len(long)] + short
            break
    return out


@lru_cache(maxsize=65536)
def readings(name: str) -> tuple[frozenset[str], ...]:
    """Per character, every pinyin reading with its tone number (``zeng1``, ``ceng2``)."""
    return tuple(frozenset(options) for options in _ordered_readings(name))


@lru_cache(maxsize=32768)
def _char_readings(char: str) -> tuple[str, ...]:
    # One character at a time is what pypinyin does with a list of characters anyway
    # (each is its own segment); a few thousand characters make almost every name.
    from pypinyin import Style, pinyin

    (options,) = pinyin([char], style=Style.TONE3, heteronym=True, neutral_tone_with_five=True)
    return tuple(r for r in options if r)


@lru_cache(maxsize=65536)
def _ordered_readings(name: str) -> tuple[tuple[str, ...], ...]:
    # pypinyin lists the commonest reading first; a surname's own reading goes first.
    chars = [c for c in to_simplified(name) if _CJK.match(c)]
    out = [_char_readings(c) for c in chars]
    if chars and chars[0] in _SURNAME_READINGS:
        first = _SURNAME_READINGS[chars[0]]
        out[0] = (first, *(r for r in out[0] if r != first))
    return tuple(out)


@lru_cache(maxsize=65536)
def name_key(name: str) -> str:
    """A blocking key: the name's first reading per character, toneless and folded.

    Equal for homophones and for the dialect folds; for a non-Chinese name, the
    upper-cased letters. Used only through a keyed hash, never stored as is.
    """
    simplified = to_simplified(name)
    if not is_chinese(simplified):
        return "".join(ch for ch in simplified if ch.isalpha())
    return " ".join(fuzzy_syllable(r[0]) for r in _ordered_readings(simplified) if r)
