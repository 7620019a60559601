"""A generated Chinese population for demos, tests and benchmarks (no real person in it).

People get a surname drawn by rough national frequency, a one- or two-character given
name, a sex, a birth date, a valid ID number in a real county (GB/T 2260), a mobile
number, an address in that county and a health-card number. A share of them is
registered a second time by another source with the errors clerks and systems really
make: a homophone typed through pinyin, traditional characters, day and month swapped,
a mistyped or missing phone, a reworded address, the ID number missing, typed in full
width or as the old 15-digit number. Every record carries the id of the person it
describes, so linkage can be scored.

:func:`dirty_population` is the harder one, a town as a hospital's patient files see
it: households (couples, children, twins) sharing an address and a parent's phone,
children registered under a parent's number, namesakes, and records from three
channels — registration windows, kiosks and an old system — each with the errors its
clerks, patients and data make, one labelled kind per duplicate (:data:`ERROR_KINDS`),
and the pairs that must stay apart labelled too (:data:`APART_KINDS`).
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

__all__ = [
    "APART_KINDS",
    "ERROR_KINDS",
    "DirtyPopulation",
    "Person",
    "dirty_population",
    "population",
]

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
    #: the channel the record came from (dirty population: window, kiosk, old_system)
    channel: str = ""

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


# --- the dirty population -----------------------------------------------------------

#: The kinds of error a duplicate record carries, with their weights per channel
#: (registration window, kiosk, old system). The weights are this generator's
#: assumptions of realistic proportions, not measurements: clerks at a window mistype
#: numbers and write homophones; a kiosk reads the ID card, so its errors are in what
#: the patient types (the phone) and in the card's own (household) address; an old
#: system has 15-digit numbers, placeholder birth dates, old phones and traditional
#: characters, and often no ID number at all.
ERROR_KINDS: dict[str, tuple[float, float, float]] = {
    "clean": (20, 30, 8),  # only fields missing
    "id_missing": (8, 0, 16),
    "id_keystroke": (5, 0, 3),  # one digit → a neighbouring key
    "id_transposition": (3, 0, 2),  # two adjacent characters swapped
    "id_check": (2, 0, 2),  # a wrong check character
    "id_15_digit": (0, 0, 10),
    "id_fullwidth": (3, 0, 3),  # full-width digits, or spaces
    "birth_digit": (3, 0, 3),  # one digit of the date mistyped
    "birth_swap": (2, 0, 3),  # day and month swapped
    "birth_placeholder": (1, 0, 8),  # 01-01, 07-01, the 1st of the month
    "name_space": (3, 0, 2),
    "name_homophone": (7, 0, 4),  # same pinyin, other characters
    "name_traditional": (1, 0, 4),
    "phone_new": (6, 12, 6),  # the same person's new number
    "phone_old": (0, 0, 5),  # an old landline
    "phone_formatted": (3, 4, 3),  # 138-0013-8000, +86 …
    "phone_typo": (3, 6, 2),
    "addr_abbrev": (4, 0, 3),
    "addr_building": (3, 0, 3),  # 9栋5单元2584 → 9-5-2584
    "addr_region_missing": (3, 0, 3),  # no province / city
    "addr_moved": (4, 8, 6),
    "sex_wrong": (1, 0, 1),
    "multi": (5, 3, 8),  # two or three of the above
}
#: Pairs of records of *different* people that must stay apart.
APART_KINDS = ("twin", "sibling", "namesake", "child_suffix", "child_no_suffix")
_CHANNELS = ("window", "kiosk", "old_system")

_GIVEN_MALE_WIDE = _GIVEN_MALE + "刚毅峰磊晨睿哲轩瑞诚浩然子豪天佑俊杰嘉懿"
_GIVEN_FEMALE_WIDE = _GIVEN_FEMALE + "晓彤诗涵梦琪雨欣可馨子萱思雨婧喆嘉怡"
_KEYPAD = {"0": "12", "1": "024", "2": "1350", "3": "26", "4": "1578", "5": "2468",
           "6": "3579", "7": "48", "8": "5790", "9": "68", "X": "9"}  # fmt: skip
_ABBREVIATIONS = (("省", ""), ("市", ""), ("自治区", ""), ("自治州", ""), ("单元", "-"))


@dataclass(frozen=True, slots=True)
class DirtyPopulation:
    """Records of a dirty population and the labels of its pairs.

    ``records`` in import order; ``pairs`` maps each labelled pair of record ids
    (sorted) to its kind: an :data:`ERROR_KINDS` key for two records of one person, an
    :data:`APART_KINDS` value for records of different people who must stay apart.
    ``error_of`` names the kind each duplicate record carries.
    """

    records: list[Person]
    pairs: dict[tuple[str, str], str]
    error_of: dict[str, str]


@dataclass(slots=True)
class _Human:
    person: int
    name: str
    sex: int
    born: dt.date
    id_number: str | None  # own 18-digit number; None for a child without one
    stand_in: str | None  # a child's parent number + n/z
    phone: str
    address: str
    region: str
    card: str
    household: int
    child: bool = False


@lru_cache(maxsize=4)
def _zipf_weights(size: int) -> list[float]:
    total = 0.0
    out = []
    for rank in range(1, size + 1):
        total += rank**-0.6
        out.append(total)
    return out


def _zipf_choice(rng: random.Random, pool: str) -> str:
    # Given-name characters are skewed: a few are everywhere (伟, 芳), most are rare.
    return rng.choices(pool, cum_weights=_zipf_weights(len(pool)))[0]


def _id_body(county: str, born: dt.date, sequence: int) -> str:
    body = f"{county}{born:%Y%m%d}{sequence:03d}"
    return body + check_character(body)


def _address(rng: random.Random, county: str) -> str:
    region = lookup(county)
    return (
        f"{region.full_name}{rng.choice(_STREETS)}{rng.randrange(1, 400)}号"
        f"{rng.randrange(1, 30)}栋{rng.randrange(1, 6)}单元{rng.randrange(101, 2800)}"
    )


def _mobile(rng: random.Random) -> str:
    return rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


@lru_cache(maxsize=1)
def _s2t() -> object:
    import opencc

    return opencc.OpenCC("s2t")


@lru_cache(maxsize=1)
def _wide_homophones() -> dict[str, tuple[str, ...]]:
    pool = (
        _GIVEN_MALE_WIDE
        + _GIVEN_FEMALE_WIDE
        + "".join(s for s, _ in _SURNAMES)
        + "方放房防仿访纺卫未位魏维慧惠会汇辉徽晖军均君俊峻骏静敬境镜婧晶精经京"
        "丽力立利莉励历李理礼里芳坊华化花画桦红虹宏洪鸿娜纳那拿强墙蔷"
    )
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


def _households(rng: random.Random, people: int, today: dt.date) -> list[_Human]:
    humans: list[_Human] = []
    counties = _counties()
    surnames, weights = zip(*_SURNAMES, strict=True)
    household = 0
    stand_ins: dict[str, int] = {}  # parent number + letter → children under it

    def make(
        sex: int,
        born: dt.date,
        surname: str,
        county: str,
        address: str,
        phone: str,
        given: str | None = None,
        sequence: int | None = None,
    ) -> _Human:
        pool = _GIVEN_MALE_WIDE if sex == 1 else _GIVEN_FEMALE_WIDE
        if given is None:
            given = "".join(_zipf_choice(rng, pool) for _ in range(rng.choice((1, 2, 2, 2))))
        if sequence is None:
            sequence = rng.randrange(0, 500) * 2 + (1 if sex == 1 else 0)
        number = _id_body(county, born, sequence)
        human = _Human(
            len(humans),
            surname + given,
            sex,
            born,
            number,
            None,
            phone,
            address,
            county,
            f"H{county}{len(humans):010d}",
            household,
        )
        humans.append(human)
        return human

    while len(humans) < people:
        household += 1
        county = rng.choice(counties)
        address = _address(rng, county)
        roll = rng.random()
        adult_born = today - dt.timedelta(days=rng.randrange(20 * 365, 90 * 365))
        first = make(
            rng.choice((1, 2)),
            adult_born,
            rng.choices(surnames, weights)[0],
            rng.choice(counties) if rng.random() < 0.3 else county,
            address,
            _mobile(rng),
        )
        parents = [first]
        if roll >= 0.3 and roll < 0.9:  # a couple, with or without children
            partner_born = adult_born + dt.timedelta(days=rng.randrange(-5 * 365, 5 * 365))
            if partner_born < today - dt.timedelta(days=18 * 365):
                parents.append(
                    make(
                        3 - first.sex,
                        partner_born,
                        rng.choices(surnames, weights)[0],
                        rng.choice(counties) if rng.random() < 0.3 else county,
                        address,
                        _mobile(rng),
                    )
                )
        if roll >= 0.55:  # children
            youngest_parent = max(p.born for p in parents)
            earliest = youngest_parent + dt.timedelta(days=18 * 365)
            if earliest >= today:
                continue
            surname = next((p.name[0] for p in parents if p.sex == 1), first.name[0])
            for _ in range(rng.choice((1, 1, 2, 2, 3))):
                born = earliest + dt.timedelta(days=rng.randrange((today - earliest).days))
                births = 2 if rng.random() < 0.04 else 1  # twins
                sequence = rng.randrange(0, 499) * 2
                age = (today - born).days / 365.25
                for order in range(births):
                    sex = rng.choice((1, 2))
                    phone = (
                        _mobile(rng)
                        if age >= 16 and rng.random() < 0.5
                        else rng.choice(parents).phone
                    )
                    child = make(
                        sex,
                        born,
                        surname,
                        county,
                        address,
                        phone,
                        sequence=sequence + 2 * order + (1 if sex == 1 else 0),
                    )
                    child.child = True
                    if age < 6 and rng.random() < 0.4:
                        # registered under a parent's number until the child has one
                        parent = rng.choice(parents)
                        letter = "z" if sex == 1 else "n"
                        stem = f"{parent.id_number}{letter}"
                        earlier = stand_ins.get(stem, 0)
                        stand_ins[stem] = earlier + 1
                        child.stand_in = stem + (str(earlier + 1) if earlier else "")
                        child.id_number = None
    return humans[:people]


def _has_card(rng: random.Random, channel: str) -> bool:
    # A kiosk reads the health card; at a window half the patients show one; the old
    # system predates the cards.
    return channel == "kiosk" or (channel == "window" and rng.random() < 0.5)


def _keystroke(rng: random.Random, number: str) -> str:
    i = rng.randrange(len(number))
    return number[:i] + rng.choice(_KEYPAD[number[i]]) + number[i + 1 :]


def _transpose(rng: random.Random, number: str) -> str:
    spots = [i for i in range(len(number) - 1) if number[i] != number[i + 1]]
    i = rng.choice(spots)
    return number[:i] + number[i + 1] + number[i] + number[i + 2 :]


def _wrong_check(rng: random.Random, number: str) -> str:
    return number[:17] + rng.choice([c for c in "0123456789X" if c != number[17]])


def _birth_digit(rng: random.Random, born: dt.date) -> dt.date:
    text = f"{born:%Y%m%d}"
    for _ in range(50):
        i = rng.choice((2, 3, 5, 6, 7))  # the decade, year, month and day digits
        candidate = text[:i] + str(rng.randrange(10)) + text[i + 1 :]
        try:
            changed = dt.date(int(candidate[:4]), int(candidate[4:6]), int(candidate[6:]))
        except ValueError:
            continue
        if changed != born and changed < dt.date(2026, 1, 1):
            return changed
    return born.replace(day=1 if born.day != 1 else 2)


def _address_variant(rng: random.Random, kind: str, address: str, region: str) -> str:
    full = lookup(region)
    if kind == "addr_abbrev":
        out = address
        found = [pair for pair in _ABBREVIATIONS if pair[0] in address]
        for long, short in rng.sample(found, k=min(2, len(found))):
            out = out.replace(long, short, 1)
        return out
    if kind == "addr_building":
        head, _, tail = address.partition("号")
        building, _, rest = tail.partition("栋")
        unit, _, room = rest.partition("单元")
        style = rng.randrange(3)
        if style == 0:
            return f"{head}号{building}-{unit}-{room}"
        if style == 1:
            return f"{head}号{building}号楼{unit}单元{room}室"
        return f"{head}号{building}幢{unit}单元{room}"
    if kind == "addr_region_missing":
        prefix = "".join(p for p in (full.province, full.city) if p and p not in ("市辖区", "县"))
        return address.removeprefix(prefix) if address.startswith(prefix) else address[3:]
    return _address(rng, rng.choice(_counties()))  # moved


def _apply(rng: random.Random, kind: str, rec: dict[str, object], human: _Human) -> str:
    """Apply one error kind to a record's fields; the kind actually applied."""
    name = str(rec["name"])
    number = rec["id_number"]
    born = rec["birth_date"]
    assert isinstance(born, dt.date)
    if kind == "id_missing":
        rec["id_number"] = None
    elif kind in ("id_keystroke", "id_transposition", "id_check", "id_15_digit", "id_fullwidth"):
        if not isinstance(number, str) or len(number) != 18 or not number.isascii():
            return _apply(rng, "id_missing" if number else "name_homophone", rec, human)
        if kind == "id_keystroke":
            rec["id_number"] = _keystroke(rng, number)
        elif kind == "id_transposition":
            rec["id_number"] = _transpose(rng, number)
        elif kind == "id_check":
            rec["id_number"] = _wrong_check(rng, number)
        elif kind == "id_15_digit":
            if born.year >= 2000 or number[6:8] != "19":
                return _apply(rng, "id_fullwidth", rec, human)
            rec["id_number"] = number[:6] + number[8:17]
        elif rng.random() < 0.7:
            rec["id_number"] = "".join(chr(ord(c) + 0xFEE0) for c in number)
        else:
            rec["id_number"] = f"{number[:6]} {number[6:14]} {number[14:]}"
    elif kind == "birth_digit":
        rec["birth_date"] = _birth_digit(rng, born)
    elif kind == "birth_swap":
        if born.day > 12 or born.day == born.month:
            return _apply(rng, "birth_digit", rec, human)
        rec["birth_date"] = born.replace(month=born.day, day=born.month)
    elif kind == "birth_placeholder":
        options = [
            d
            for d in (
                born.replace(month=1, day=1),
                born.replace(month=7, day=1),
                born.replace(day=1),
            )
            if d != born
        ]
        rec["birth_date"] = rng.choice(options) if options else born.replace(day=2)
    elif kind == "name_space":
        i = rng.randrange(1, len(name))
        rec["name"] = name[:i] + rng.choice((" ", "　", "  ")) + name[i:]
    elif kind == "name_homophone":
        homophones = _wide_homophones()
        spots = [i for i, c in enumerate(name) if c in homophones]
        if not spots:
            return _apply(rng, "name_space", rec, human)
        i = rng.choice(spots)
        rec["name"] = name[:i] + rng.choice(homophones[name[i]]) + name[i + 1 :]
    elif kind == "name_traditional":
        converted = _s2t().convert(name)  # type: ignore[attr-defined]
        if converted == name:
            return _apply(rng, "name_homophone", rec, human)
        rec["name"] = converted
    elif kind == "phone_new":
        rec["phone"] = _mobile(rng)
    elif kind == "phone_old":
        rec["phone"] = f"0{rng.randrange(10, 999)}-{rng.randrange(2000000, 89999999)}"
    elif kind == "phone_formatted":
        phone = human.phone
        rec["phone"] = rng.choice(
            (
                f"{phone[:3]}-{phone[3:7]}-{phone[7:]}",
                f"+86 {phone}",
                f"{phone[:3]} {phone[3:7]} {phone[7:]}",
            )
        )
    elif kind == "phone_typo":
        rec["phone"] = (
            _transpose(rng, human.phone) if rng.random() < 0.3 else _typo_digit(rng, human.phone)
        )
    elif kind.startswith("addr_"):
        rec["address"] = _address_variant(rng, kind, human.address, human.region)
    elif kind == "sex_wrong":
        rec["sex"] = 3 - int(str(rec["sex"]))
    elif kind == "multi":
        simple = [k for k in ERROR_KINDS if k not in ("clean", "multi", "id_missing")]
        for part in rng.sample(simple, k=rng.choice((2, 2, 3))):
            _apply(rng, part, rec, human)
    return kind


def dirty_population(
    records: int = 20000,
    *,
    seed: int = 2026,
    duplicate_rate: float = 0.25,
    today: dt.date = dt.date(2026, 1, 1),
) -> DirtyPopulation:
    """About ``records`` records of a dirty town (see the module), labelled for scoring.

    Each person has a first record from one channel; ``duplicate_rate`` of them a
    second one from another channel (a few a third), each duplicate with one error
    kind drawn by that channel's weights (:data:`ERROR_KINDS`). Children under six
    are partly registered under a parent's number with a suffix (an old system
    sometimes without it), twins share a birth date, a household its address and a
    parent's phone, and a hundredth of the people have a namesake born the same day.
    """
    rng = random.Random(seed)
    people = int(records / (1 + duplicate_rate * 1.15))
    humans = _households(rng, people, today)
    # Namesakes: an unrelated person with the same name and birth date.
    for human in rng.sample(humans, k=max(1, len(humans) // 100)):
        county = rng.choice(_counties())
        sequence = rng.randrange(0, 500) * 2 + (1 if human.sex == 1 else 0)
        humans.append(
            _Human(
                len(humans),
                human.name,
                human.sex,
                human.born,
                _id_body(county, human.born, sequence),
                None,
                _mobile(rng),
                _address(rng, county),
                county,
                f"H{county}{len(humans):010d}",
                -1,
            )
        )
    out: list[Person] = []
    first_of: dict[int, str] = {}
    error_of: dict[str, str] = {}
    pairs: dict[tuple[str, str], str] = {}
    by_person: dict[int, list[str]] = {}
    kinds = list(ERROR_KINDS)
    for human in humans:
        channel = rng.choices(_CHANNELS, weights=(5, 3, 2))[0]
        number = human.id_number or human.stand_in
        if channel == "old_system" and human.stand_in and rng.random() < 0.5:
            number = human.stand_in[:18]  # the parent's number as it is, no suffix
        first = Person(
            record_id=f"R{len(out):08d}",
            person=human.person,
            name=human.name,
            sex=human.sex,
            birth_date=human.born,
            id_number=number,
            phone=human.phone,
            address=human.address,
            card_number=human.card if _has_card(rng, channel) else None,
            channel=channel,
        )
        out.append(first)
        first_of[human.person] = first.record_id
        by_person[human.person] = [first.record_id]
        copies = (1 if rng.random() < duplicate_rate else 0) + (rng.random() < 0.03)
        for _ in range(copies):
            channel = rng.choice([c for c in _CHANNELS if c != first.channel] or ["window"])
            weights = [ERROR_KINDS[k][_CHANNELS.index(channel)] for k in kinds]
            rec: dict[str, object] = {
                "name": human.name,
                "sex": human.sex,
                "birth_date": human.born,
                "id_number": human.id_number or human.stand_in,
                "phone": human.phone,
                "address": human.address,
            }
            kind = _apply(rng, rng.choices(kinds, weights=weights)[0], rec, human)
            # What the channel leaves out, unless that field carries the error.
            if channel == "kiosk" and not kind.startswith("addr_") and rng.random() < 0.5:
                rec["address"] = None  # kiosks rarely ask
            if channel == "old_system" and not kind.startswith("phone_") and rng.random() < 0.2:
                rec["phone"] = None
            duplicate = Person(
                record_id=f"R{len(out):08d}",
                person=human.person,
                name=str(rec["name"]),
                sex=int(str(rec["sex"])),
                birth_date=rec["birth_date"],  # type: ignore[arg-type]
                id_number=rec["id_number"],  # type: ignore[arg-type]
                phone=rec["phone"],  # type: ignore[arg-type]
                address=rec["address"],  # type: ignore[arg-type]
                card_number=human.card if _has_card(rng, channel) else None,
                channel=channel,
            )
            out.append(duplicate)
            error_of[duplicate.record_id] = kind
            for other in by_person[human.person]:
                earlier = error_of.get(other)
                label = kind if earlier in (None, "clean") else "multi"
                if kind == "clean" and earlier is not None:
                    label = earlier
                pairs[(other, duplicate.record_id)] = label
            by_person[human.person].append(duplicate.record_id)
    # The pairs that must stay apart, between first records.
    by_household: dict[int, list[_Human]] = {}
    for human in humans:
        if human.household >= 0:
            by_household.setdefault(human.household, []).append(human)
    for members in by_household.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                key = tuple(sorted((first_of[a.person], first_of[b.person])))
                if a.child and b.child:
                    pairs[key] = "twin" if a.born == b.born else "sibling"  # type: ignore[index]
                if b.stand_in and a.id_number and b.stand_in.startswith(a.id_number):
                    record = out[int(first_of[b.person][1:])]
                    suffixed = record.id_number != a.id_number
                    pairs[key] = "child_suffix" if suffixed else "child_no_suffix"  # type: ignore[index]
    by_name: dict[tuple[str, dt.date], list[int]] = {}
    for human in humans:
        by_name.setdefault((human.name, human.born), []).append(human.person)
    for persons in by_name.values():
        for i, one in enumerate(persons):
            for other_person in persons[i + 1 :]:
                low, high = sorted((first_of[one], first_of[other_person]))
                pairs.setdefault((low, high), "namesake")
    return DirtyPopulation(out, pairs, error_of)
