"""A generated Chinese population for demos, tests and benchmarks (no real person in it).

People get a surname drawn by rough national frequency, a one- or two-character given
name, a sex, a birth date, a valid ID number in a real county (GB/T 2260), a mobile
number, an address in that county and a health-card number. A share of them is
registered a second time by another source with the errors clerks and systems really
make: a homophone typed through pinyin, traditional characters, day and month swapped,
a mistyped or missing phone, a reworded address, the ID number missing, typed in full
width or as the old 15-digit number. Every record carries the id of the person it
describes, so linkage can be scored.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from pypinyin import Style, pinyin

from hcmiddleware.empi.identity import check_character
from hcmiddleware.empi.regions import _table, lookup

__all__ = ["Person", "population"]

# Commonest surnames with rough shares (per mille) of the population.
_SURNAMES = (
    ("王", 72), ("李", 72), ("张", 68), ("刘", 54), ("陈", 46), ("杨", 32), ("黄", 23),
    ("赵", 22), ("吴", 21), ("周", 20), ("徐", 16), ("孙", 15), ("马", 15), ("朱", 13),
    ("胡", 12), ("郭", 12), ("何", 11), ("林", 11), ("罗", 10), ("高", 10), ("郑", 9),
    ("梁", 9), ("谢", 8), ("宋", 7), ("唐", 7), ("许", 7), ("韩", 7), ("冯", 7), ("邓", 7),
    ("曹", 6), ("彭", 6), ("曾", 6), ("肖", 6), ("田", 5), ("董", 5), ("袁", 5), ("潘", 5),
    ("于", 5), ("蒋", 5), ("蔡", 5), ("余", 5), ("杜", 4), ("叶", 4), ("程", 4), ("苏", 4),
    ("魏", 4), ("吕", 4), ("丁", 4), ("任", 4), ("沈", 3), ("姚", 3), ("卢", 3), ("姜", 3),
    ("崔", 3), ("钟", 3), ("谭", 3), ("陆", 3), ("汪", 3), ("范", 3), ("金", 3), ("石", 3),
    ("廖", 3), ("贾", 3), ("夏", 2), ("韦", 2), ("付", 2), ("方", 2), ("白", 2), ("邹", 2),
    ("孟", 2), ("熊", 2), ("秦", 2), ("邱", 2), ("江", 2), ("尹", 2), ("薛", 2), ("闫", 2),
    ("段", 2), ("雷", 2), ("侯", 2), ("龙", 2), ("史", 2), ("陶", 2), ("黎", 2), ("贺", 2),
    ("顾", 2), ("毛", 2), ("郝", 2), ("龚", 2), ("邵", 2), ("万", 2), ("覃", 2), ("单", 1),
)  # fmt: skip
_GIVEN_MALE = "伟强磊军勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆帅旭宁龙林阳建国志文博"
_GIVEN_FEMALE = "芳娜敏静丽艳娟霞燕玲桂丹萍红琳雪梅婷洁晶颖倩慧莉兰英秀玉凤佳欣怡"
_TRADITIONAL = {"张": "張", "刘": "劉", "陈": "陳", "杨": "楊", "黄": "黃", "赵": "趙",
                "吴": "吳", "周": "周", "孙": "孫", "马": "馬", "郑": "鄭", "谢": "謝",
                "冯": "馮", "邓": "鄧", "萧": "蕭", "伟": "偉", "军": "軍", "丽": "麗",
                "艳": "艷", "娟": "娟", "华": "華", "飞": "飛", "凤": "鳳", "兰": "蘭"}  # fmt: skip
_STREETS = ("人民路", "解放路", "中山路", "建设路", "和平街", "朝阳路", "新华街", "胜利路",
            "文化路", "光明街", "青年路", "东风路", "幸福路", "长江路", "黄河路")  # fmt: skip
_MOBILE_PREFIXES = ("130", "131", "132", "135", "136", "137", "138", "139", "150", "151",
                    "152", "158", "159", "176", "177", "180", "181", "186", "187")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Person:
    """One generated record: ``person`` is the id of the human it describes."""

    record_id: str
    person: int
    name: str
    sex: int
    birth_date: dt.date | None
    id_number: str | None
    phone: str | None
    address: str | None
    card_number: str | None

    def as_row(self) -> dict[str, str]:
        """The record as a CSV row of the import format."""
        return {
            "record_id": self.record_id,
            "name": self.name,
            "sex": str(self.sex),
            "birth_date": self.birth_date.isoformat() if self.birth_date else "",
            "id_number": self.id_number or "",
            "phone": self.phone or "",
            "address": self.address or "",
            "card_number": self.card_number or "",
        }


@lru_cache(maxsize=1)
def _counties() -> tuple[str, ...]:
    return tuple(
        code
        for code in _table().current
        if code[4:] != "00" and code[4:6] < "90" and lookup(code).city is not None
    )


@lru_cache(maxsize=1)
def _homophones() -> dict[str, tuple[str, ...]]:
    pool = _GIVEN_MALE + _GIVEN_FEMALE + "".join(s for s, _ in _SURNAMES) + "方放房防仿访纺"
    by_sound: dict[str, list[str]] = {}
    for char in dict.fromkeys(pool):
        sound = pinyin(char, style=Style.NORMAL)[0][0]
        by_sound.setdefault(sound, []).append(char)
    return {
        char: tuple(c for c in chars if c != char)
        for chars in by_sound.values()
        for char in chars
        if len(chars) > 1
    }


def _original(rng: random.Random, person: int, today: dt.date) -> Person:
    surnames, weights = zip(*_SURNAMES, strict=True)
    surname = rng.choices(surnames, weights=weights)[0]
    sex = rng.choice((1, 2))
    pool = _GIVEN_MALE if sex == 1 else _GIVEN_FEMALE
    given = "".join(rng.choice(pool) for _ in range(rng.choice((1, 2, 2, 2))))
    born = today - dt.timedelta(days=rng.randrange(1, 95 * 365))
    county = rng.choice(_counties())
    sequence = rng.randrange(0, 500) * 2 + (1 if sex == 1 else 0)
    body = f"{county}{born:%Y%m%d}{sequence:03d}"
    region = lookup(county)
    address = (
        f"{region.full_name}{rng.choice(_STREETS)}{rng.randrange(1, 400)}号"
        f"{rng.randrange(1, 30)}栋{rng.randrange(1, 6)}单元{rng.randrange(101, 2800)}"
    )
    return Person(
        record_id=f"P{person:08d}",
        person=person,
        name=surname + given,
        sex=sex,
        birth_date=born,
        id_number=body + check_character(body),
        phone=rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}",
        address=address,
        card_number=f"H{county}{person:010d}",
    )


def _typo_digit(rng: random.Random, digits: str) -> str:
    i = rng.randrange(len(digits))
    return digits[:i] + str((int(digits[i]) + rng.randrange(1, 10)) % 10) + digits[i + 1 :]


def _duplicate(rng: random.Random, p: Person, number: int) -> Person:
    name, born, phone = p.name, p.birth_date, p.phone
    id_number: str | None = p.id_number
    address, card = p.address, None  # the second source has no card number
    errors = rng.sample(("name", "date", "phone", "address", "id", "none"), k=rng.choice((1, 2)))
    if "name" in errors:
        choice = rng.random()
        homophones = _homophones()
        positions = [i for i, c in enumerate(name) if c in homophones]
        if choice < 0.5 and positions:
            i = rng.choice(positions)
            name = name[:i] + rng.choice(homophones[name[i]]) + name[i + 1 :]
        elif choice < 0.8:
            name = "".join(_TRADITIONAL.get(c, c) for c in name)
        else:
            name = name[0] + " " + name[1:]
    if "date" in errors and born is not None:
        id_number = None  # a wrong date with the number would be refused at entry
        if born.day <= 12 and born.day != born.month:
            born = born.replace(month=born.day, day=born.month)
        else:
            born = None
    if "phone" in errors:
        phone = _typo_digit(rng, phone) if phone and rng.random() < 0.5 else None
    if "address" in errors and address:
        address = address.split("号")[0] + "号" if rng.random() < 0.5 else None
    if "id" in errors and id_number and born == p.birth_date:
        roll = rng.random()
        if roll < 0.4:
            id_number = None
        elif roll < 0.7:
            id_number = "".join(chr(ord(c) + 0xFEE0) for c in id_number)
        elif born is not None and p.birth_date and p.birth_date.year < 2000:
            id_number = id_number[:6] + id_number[8:17]  # the old 15-digit number
    return Person(
        record_id=f"D{number:08d}",
        person=p.person,
        name=name,
        sex=p.sex,
        birth_date=born if born is not None or id_number else p.birth_date,
        id_number=id_number,
        phone=phone,
        address=address,
        card_number=card,
    )


def population(
    size: int,
    *,
    duplicate_rate: float = 0.1,
    seed: int = 2026,
    today: dt.date = dt.date(2026, 1, 1),
) -> Iterator[Person]:
    """``size`` people, then about ``size × duplicate_rate`` second records of some of them."""
    rng = random.Random(seed)
    originals = []
    for person in range(size):
        p = _original(rng, person, today)
        originals.append(p)
        yield p
    for number in range(int(size * duplicate_rate)):
        yield _duplicate(rng, rng.choice(originals), number)
