"""One registry type for every kind of thing users pick by name.

A :class:`Registry` maps names to things of one kind: model architectures (``igfiqa.models``),
model kinds (``igfiqa.inference.kinds``), quality methods (``igfiqa.evaluation.quality``),
benchmark readers (``igfiqa.data.benchmarks``), face detectors (``igfiqa.detection``) and training
data formats (``igfiqa.data.datasets``). Each holds its names in registration order, their
aliases, and one spelling rule (``normalise``: e.g. case and ``_`` / ``-`` folded), and refuses an
unknown name with a :class:`~igfiqa.errors.ConfigError` that says what kind of thing was asked for,
lists the known names and suggests the closest one::

    MODELS: Registry[Builder] = Registry("model")

    @MODELS.register("iresnet50", aliases=("r50",))
    def iresnet50(**options): ...

    MODELS.lookup("R50")   # the builder (case folded, alias resolved)
    MODELS.lookup("r05")   # ConfigError: unknown model 'r05' (did you mean 'r50'?): choose one of ...

It is a read-only :class:`~collections.abc.Mapping` of the canonical names, so ``name in REG``,
``REG.get(name)``, ``list(REG)`` and ``REG.values()`` work as on a dict (aliases and spelling
included in ``in``, ``[]`` and ``get``; iteration gives each canonical name once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

from igfiqa.errors import ConfigError

T = TypeVar("T")
D = TypeVar("D")


def exact(name: str) -> str:
    """The spelling rule that changes nothing."""
    return name


def folded(name: str) -> str:
    """Surrounding blanks dropped, lower case, ``_`` read as ``-``: ``" Diffiqa_R"`` -> ``diffiqa-r``."""
    return name.strip().lower().replace("_", "-")


class Registry(Mapping[str, T]):
    """Names -> things of one kind (``what``: ``"model"``, ``"benchmark kind"``, ...).

    ``normalise`` is applied to every name registered and looked up (default :func:`folded`);
    ``also`` lists names the caller accepts besides the registered ones (``auto``), for the error
    message only.
    """

    def __init__(
        self,
        what: str,
        *,
        normalise: Callable[[str], str] = folded,
        also: Iterable[str] = (),
    ) -> None:
        self.what = what
        self.normalise = normalise
        self.also = tuple(also)
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    # -- registering ------------------------------------------------------------------------------
    def add(self, name: str, item: T, *, aliases: Iterable[str] = ()) -> T:
        """Register ``item`` under ``name`` (and ``aliases``); returns ``item``. A name or alias
        that is already taken is a programming error (:class:`ValueError`)."""
        key = self.normalise(name)
        keys = [self.normalise(a) for a in aliases]
        if not key:
            raise ValueError(f"a {self.what} needs a name")
        for taken in (key, *keys):
            if taken in self._items or taken in self._aliases or keys.count(taken) > 1:
                raise ValueError(f"two {self.what}s claim the name {taken!r}")
        if key in keys:
            raise ValueError(f"{self.what} {key!r} lists itself as an alias")
        self._items[key] = item
        for alias in keys:
            self._aliases[alias] = key
        return item

    def register(self, name: str, *, aliases: Iterable[str] = ()) -> Callable[[D], D]:
        """Decorator form of :meth:`add`: ``@REG.register("name", aliases=(...))``."""

        def decorate(item: D) -> D:
            self.add(name, item, aliases=aliases)  # type: ignore[arg-type]
            return item

        return decorate

    def copy(self) -> Registry[T]:
        """An independent registry with the same entries (a test can add to it and drop it)."""
        twin: Registry[T] = Registry(self.what, normalise=self.normalise, also=self.also)
        twin._items = dict(self._items)
        twin._aliases = dict(self._aliases)
        return twin

    # -- looking up -------------------------------------------------------------------------------
    def canonical(self, name: str) -> str:
        """The registered name ``name`` stands for (spelling and aliases resolved); an unknown
        name raises :class:`ConfigError` listing the known ones and the closest."""
        key = self.normalise(str(name))
        key = self._aliases.get(key, key)
        if key not in self._items:
            raise ConfigError(self.unknown_message(name))
        return key

    def lookup(self, name: str) -> T:
        """The thing registered as ``name`` (or an alias of it); :class:`ConfigError` if none."""
        return self._items[self.canonical(name)]

    def suggestion(self, name: str) -> str | None:
        """The known name or alias closest to ``name`` (``None`` when nothing is close)."""
        import difflib

        close = difflib.get_close_matches(
            self.normalise(str(name)), [*self._items, *self._aliases, *self.also], n=1, cutoff=0.6
        )
        return close[0] if close else None

    def unknown_message(self, name: str) -> str:
        """``unknown model 'r05' (did you mean 'r50'?): choose one of iresnet18 (r18), ...``"""
        by_name: dict[str, list[str]] = {}
        for alias, target in self._aliases.items():
            by_name.setdefault(target, []).append(alias)
        known = [
            f"{key} ({', '.join(by_name[key])})" if key in by_name else key for key in self._items
        ]
        choices = ", ".join(known) or "none registered"
        if self.also:
            choices += " or " + " or ".join(self.also)
        close = self.suggestion(name)
        hint = f" (did you mean {close!r}?)" if close else ""
        return f"unknown {self.what} {name!r}{hint}: choose one of {choices}"

    def names(self) -> list[str]:
        """The registered names, in registration order (aliases not included)."""
        return list(self._items)

    def aliases(self) -> dict[str, str]:
        """Alias -> the name it stands for, in registration order."""
        return dict(self._aliases)

    # -- Mapping ----------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        if not isinstance(name, str):
            raise KeyError(name)
        key = self.normalise(name)
        return self._items[self._aliases.get(key, key)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._items)})"


__all__ = ["Registry", "exact", "folded"]
