"""Dagster run config derived from the core's parameter dataclasses, so no field is copied.

``config_class(name, LabelSpec)`` is a ``dg.Config`` with LabelSpec's fields, types and
defaults; ``optional=True`` makes every field default to None (unset), for configs whose
unset fields are decided further down (``TrainingConfig.from_env``: QUANT_TRAIN_* settings).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from pydantic import Field, create_model

from quant_assets.settings import field_types


def config_class(
    name: str,
    source: type,
    *,
    fields: Sequence[str] | None = None,
    optional: bool = False,
    descriptions: Mapping[str, str] | None = None,
    base: type[dg.Config] = dg.Config,
) -> type[dg.Config]:
    """A ``dg.Config`` subclass of ``base`` with ``source``'s fields (or just ``fields``)."""
    types = field_types(source)
    descriptions = descriptions or {}
    spec: dict[str, Any] = {}
    for field_name in fields or tuple(types):
        kind, description = _config_type(types[field_name], descriptions.get(field_name))
        if optional:
            spec[field_name] = (kind | None, Field(None, description=description))
        else:
            default = source.__dataclass_fields__[field_name].default  # type: ignore[attr-defined]
            spec[field_name] = (kind, Field(default, description=description))
    return create_model(name, __base__=base, __module__=base.__module__, **spec)


def _config_type(kind: Any, description: str | None) -> tuple[Any, str | None]:
    """Dagster config has no Literal: a choice of strings becomes ``str`` (the dataclass checks
    the value) with the choices in the description."""
    if typing.get_origin(kind) is not typing.Literal:
        return kind, description
    choices = " | ".join(str(c) for c in typing.get_args(kind))
    return str, f"{description}; one of {choices}" if description else f"one of {choices}"


def dataclass_values(config: dg.Config, source: type) -> dict[str, Any]:
    """The values of ``config`` that are fields of the dataclass ``source``."""
    return config.model_dump(include=set(field_types(source)))


class TickersConfig(dg.Config):
    """Which tickers a day-partitioned run builds."""

    tickers: list[str] = Field(
        default_factory=list,
        description="the tickers to build; empty: every ticker of the market resource",
    )

    def chosen(self, universe: Sequence[str]) -> list[str]:
        """The tickers asked for (all of ``universe`` when none), sorted; refuses a ticker
        outside ``universe`` with the valid ones named."""
        unknown = sorted(set(self.tickers) - set(universe))
        if unknown:
            raise dg.Failure(
                f"tickers {', '.join(unknown)} are not in the market's universe "
                f"({', '.join(universe)}); set QUANT_TICKERS or the market resource's tickers"
            )
        return sorted(set(self.tickers or universe))
