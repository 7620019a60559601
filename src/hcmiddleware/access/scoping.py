"""Answers cut to what a role may see: withheld fields are absent, not blanked.

A :class:`~hcmiddleware.models.Resident` handed to a caller comes as a copy of a
subclass made for the set of fields withheld (cached per set). The withheld fields hold
nothing, are left out of ``model_dump()`` and JSON, and reading one as an attribute
raises :class:`~hcmiddleware.errors.FieldWithheldError` naming the field and its
category. The copy is still a ``Resident`` to ``isinstance``.

A card read is cut before the card is touched: only the parts of the role's
categories are read (``CardRead.parts``), so the others never leave the card, and a
part not read raises :class:`~hcmiddleware.errors.CardPartNotReadError` as for any
partial read.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from hcmiddleware.access.policy import Category
from hcmiddleware.errors import FieldWithheldError
from hcmiddleware.models import Resident

__all__ = ["RESIDENT_FIELDS", "withheld_fields", "withhold", "withhold_resident"]

#: the Resident's personal fields by category; the rest (IDs, status, flags) are always shown
RESIDENT_FIELDS: Mapping[str, Category] = {
    "name": Category.IDENTITY,
    "sex": Category.IDENTITY,
    "birth_date": Category.IDENTITY,
    "id_number": Category.IDENTITY,
    "unverified_id_number": Category.IDENTITY,
    "ethnicity": Category.IDENTITY,
    "region_code": Category.IDENTITY,
    "identifiers": Category.IDENTITY,
    "phone": Category.CONTACT,
    "address": Category.CONTACT,
}

_M = TypeVar("_M", bound=BaseModel)


@functools.cache
def _scoped(cls: type[_M], withheld: frozenset[tuple[str, str]]) -> type[_M]:
    hidden = dict(sorted(withheld))

    def __getattribute__(self: Any, name: str) -> Any:  # noqa: N807 - the dunder itself
        category = hidden.get(name)
        if category is not None:
            raise FieldWithheldError(
                f"{cls.__name__}.{name} is withheld: it is {category} data, which this "
                "role may not see",
                field=name,
                category=category,
            )
        return cls.__getattribute__(self, name)

    def __repr_args__(self: Any) -> Any:  # noqa: N807
        for name, value in cls.__repr_args__(self):
            if name not in hidden:
                yield name, value

    namespace = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "WITHHELD": hidden,
        "__getattribute__": __getattribute__,
        "__repr_args__": __repr_args__,
    }
    return type(cls.__name__, (cls,), namespace)


def withheld_fields(
    fields: Mapping[str, Category], visible: frozenset[Category]
) -> frozenset[tuple[str, str]]:
    """The (field, category) pairs of ``fields`` outside ``visible``."""
    return frozenset((f, c.value) for f, c in fields.items() if c not in visible)


def withhold(model: _M, withheld: frozenset[tuple[str, str]]) -> _M:
    """A copy of ``model`` without the ``withheld`` fields (the model itself if none)."""
    if not withheld:
        return model
    cls = _scoped(type(model), withheld)
    values = dict(model.__dict__)
    for name, _category in withheld:
        values[name] = None
    made: _M = cls.model_construct(_fields_set=model.model_fields_set, **values)
    return made


def withhold_resident(resident: Resident, visible: frozenset[Category]) -> Resident:
    """The resident as a role seeing ``visible`` may see it."""
    return withhold(resident, withheld_fields(RESIDENT_FIELDS, visible))
