"""Answers cut to what a role may see: withheld fields are absent, not blanked.

A :class:`~hcmiddleware.models.Resident` handed to a caller comes as a copy of a
subclass made for the set of fields withheld (cached per set). The withheld fields hold
nothing, are left out of ``model_dump()`` and JSON, and reading one as an attribute
raises :class:`~hcmiddleware.errors.FieldWithheldError` naming the field and its
category. The copy is still a ``Resident`` to ``isinstance``.

An order or a report (and a registration's fee, an admission's deposit) is cut the
same way, by the fields' categories in :class:`Scope` (``[access.fields.<model>]``);
an order or report of a kind that is wholly another category (a skin test: allergies,
``[access.kinds.<model>]``) is left out of the list.

A card read is cut before the card is touched: only the parts of the role's
categories are read (``CardRead.parts``), so the others never leave the card, and a
part not read raises :class:`~hcmiddleware.errors.CardPartNotReadError` as for any
partial read.
"""

from __future__ import annotations

import copy
import functools
import weakref
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from hcmiddleware.access.policy import DEFAULT_FIELDS, DEFAULT_KINDS, MODELS, Category
from hcmiddleware.errors import FieldWithheldError
from hcmiddleware.models import Resident

__all__ = [
    "RESIDENT_FIELDS",
    "Scope",
    "model_fields",
    "original_of",
    "withheld_fields",
    "withhold",
    "withhold_resident",
]

#: the Resident's personal fields by category; the rest (IDs, status, flags) are always shown
RESIDENT_FIELDS: Mapping[str, Category] = DEFAULT_FIELDS["resident"]


def _model_class(model: str) -> type[BaseModel]:
    from hcmiddleware.models import Admission, Order, Registration, Report

    classes: dict[str, type[BaseModel]] = {
        "resident": Resident,
        "order": Order,
        "report": Report,
        "registration": Registration,
        "admission": Admission,
    }
    return classes[model]


def model_fields(model: str) -> frozenset[str]:
    """The field names of the answer model ``model`` (``order``, ``report`` …)."""
    return frozenset(_model_class(model).model_fields)


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


#: the whole answer behind each cut copy still alive, by the copy's id: a copy given back
#: to a service (a registration's admission, paid at the cashier) reaches it whole
_ORIGINALS: dict[int, BaseModel] = {}


def withhold(model: _M, withheld: frozenset[tuple[str, str]]) -> _M:
    """A copy of ``model`` without the ``withheld`` fields (the model itself if none)."""
    if not withheld:
        return model
    cls = _scoped(type(model), withheld)
    values = dict(model.__dict__)
    for name, _category in withheld:
        values[name] = None
    # a shallow copy into the scoped class, as pydantic's own ``__copy__`` makes one:
    # every field is in ``values`` already, so ``model_construct``'s pass over the
    # fields for their defaults (most of the filter's time) has nothing to add
    made: _M = object.__new__(cls)
    private = getattr(model, "__pydantic_private__", None)
    object.__setattr__(made, "__dict__", values)
    object.__setattr__(made, "__pydantic_extra__", copy.copy(model.__pydantic_extra__))
    object.__setattr__(made, "__pydantic_fields_set__", set(model.model_fields_set))
    object.__setattr__(made, "__pydantic_private__", None if private is None else dict(private))
    key = id(made)
    _ORIGINALS[key] = original_of(model) or model
    weakref.finalize(made, _ORIGINALS.pop, key, None)
    return made


def original_of(value: object) -> BaseModel | None:
    """The whole answer a cut copy was made from, or None for anything else."""
    if not getattr(type(value), "WITHHELD", None):
        return None
    return _ORIGINALS.get(id(value))


def withhold_resident(resident: Resident, visible: frozenset[Category]) -> Resident:
    """The resident as a role seeing ``visible`` may see it."""
    return withhold(resident, withheld_fields(RESIDENT_FIELDS, visible))


class Scope:
    """The categories of the answers' fields and kinds, as configured over the defaults.

    :param fields: ``[access.fields]``: per model, fields whose category is changed.
    :param kinds: ``[access.kinds]``: per model, kinds wholly of a category.
    """

    def __init__(
        self,
        fields: Mapping[str, Mapping[str, str]] | None = None,
        kinds: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        fields = fields or {}
        kinds = kinds or {}
        self.fields: dict[str, dict[str, Category]] = {
            model: {
                **DEFAULT_FIELDS.get(model, {}),
                **{f: Category(c) for f, c in fields.get(model, {}).items()},
            }
            for model in MODELS
        }
        self.kinds: dict[str, dict[str, Category]] = {
            model: {
                **DEFAULT_KINDS.get(model, {}),
                **{k: Category(c) for k, c in kinds.get(model, {}).items()},
            }
            for model in ("order", "report")
        }
        self._classes = {_model_class(model): model for model in MODELS}
        #: the fields withheld, by model and the categories seen (a handful of each)
        self._withheld: dict[tuple[str, frozenset[Category]], frozenset[tuple[str, str]]] = {}

    def model_of(self, value: object) -> str | None:
        """The configuration's name of ``value``'s model, or None when it is not cut."""
        for cls, model in self._classes.items():
            if isinstance(value, cls):
                return model
        return None

    def cut(self, value: _M, visible: frozenset[Category]) -> _M:
        """``value`` without the fields of categories outside ``visible``."""
        model = self.model_of(value)
        if model is None:
            return value
        key = (model, visible)
        withheld = self._withheld.get(key)
        if withheld is None:
            withheld = self._withheld[key] = withheld_fields(self.fields[model], visible)
        return withhold(value, withheld)

    def shown(self, value: object, visible: frozenset[Category]) -> bool:
        """False for an order or report of a kind wholly outside ``visible``."""
        model = self.model_of(value)
        kinds = self.kinds.get(model or "")
        if not kinds:
            return True
        category = kinds.get(str(getattr(value, "kind", "")))
        return category is None or category in visible
