"""Add-in options: what an add-in may declare, and the one way values are checked.

The seed gives every add-in a settings dialog of its own. Here an add-in declares its options
once, as :class:`AddInOption` values (name, kind, default, description, range or choices, and
whether a change applies live); the file, the admin socket and ``pacsref addins config`` all
validate through :meth:`OptionsSchema.validate`, so the three cannot disagree about what is
allowed. As with server settings (:mod:`pacsref.settings.fields`), every problem is reported
together, each naming the file, the add-in, the key, the value and what is allowed, so an
operator fixes everything in one pass.

Reading and writing ``<server dir>/addin-options/<add-in>.toml`` is
:mod:`pacsref.addin.options_file`.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import tomllib
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "OPTION_KINDS",
    "AddInOption",
    "AddInOptionsError",
    "OptionProblem",
    "OptionValue",
    "OptionValues",
    "OptionsSchema",
    "as_schema",
    "give_options",
    "options_in_use",
    "parse_assignment",
    "parse_cli_value",
]

OptionValue = bool | int | float | str

#: The least TOML 1.0 integer (signed 64-bit); the greatest is ``-_INT64 - 1``.
_INT64 = -(2**63)

#: The kinds an option may have; ``choice`` is a string limited to ``choices``.
OPTION_KINDS = ("bool", "int", "float", "str", "choice")

_PY_TYPE = {"bool": bool, "int": int, "float": float, "str": str, "choice": str}
_ARTICLE_TYPE = {"bool": "a bool", "int": "an int", "float": "a float", "str": "a str"}


@dataclass(frozen=True, slots=True)
class OptionProblem:
    """One thing wrong with one option value, kept structured for tools and tests."""

    source: str
    addin: str
    key: str
    value: object
    reason: str
    unknown: bool = False

    def __str__(self) -> str:
        """One self-contained line: file, key, value, what is allowed, then the add-in.

        An unknown key's value is left out: what is wrong is the key, whatever its value.
        """
        subject = self.key if self.unknown else f"{self.key} = {self.value!r}"
        return f"{self.source}: {subject}: {self.reason} (add-in {self.addin})"


class AddInOptionsError(ValueError):
    """Option values (or their file) were refused; ``str()`` lists every problem, one a line.

    A :class:`ValueError` because a bad option is a bad value; :attr:`problems` holds the
    structured problems (empty for a problem with the file as a whole, e.g. TOML syntax).
    """

    def __init__(self, message: str, problems: Iterable[OptionProblem] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[OptionProblem, ...] = tuple(problems)

    @classmethod
    def of(cls, problems: Iterable[OptionProblem]) -> AddInOptionsError:
        """The error listing ``problems`` (at least one)."""
        problems = tuple(problems)
        return cls("\n".join(str(p) for p in problems), problems)

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys with problems, in report order."""
        return tuple(problem.key for problem in self.problems)


@dataclass(frozen=True, slots=True)
class AddInOption:
    """One declared option of an add-in.

    Attributes:
        name: the key in the options file (a bare TOML key).
        kind: one of :data:`OPTION_KINDS`.
        default: the value a missing key means; must itself be valid.
        description: one sentence for the file's comment and the manager's listing.
        choices: the allowed strings of a ``choice`` option.
        minimum: lowest allowed ``int``/``float`` value, or None.
        maximum: highest allowed ``int``/``float`` value, or None.
        live: True when the add-in applies a change at once; False when it takes effect
            at the next start (the admin socket then says so).
        check: an extra rule beyond kind and range: returns why a value is refused, or None.
        allowed_text: the words for what is allowed when ``check`` narrows it further.
    """

    name: str
    kind: str
    default: OptionValue
    description: str
    choices: tuple[str, ...] = ()
    minimum: int | float | None = None
    maximum: int | float | None = None
    live: bool = True
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)
    allowed_text: str = ""

    def __post_init__(self) -> None:
        """Refuse a malformed declaration at import, where the add-in's author sees it."""
        if not self.name.isidentifier():
            raise ValueError(f"option name {self.name!r} must be an identifier")
        if self.kind not in OPTION_KINDS:
            raise ValueError(f"option {self.name}: kind {self.kind!r} is not one of {OPTION_KINDS}")
        if (self.kind == "choice") != bool(self.choices):
            raise ValueError(f"option {self.name}: choices go with kind 'choice', and only there")
        try:
            object.__setattr__(self, "default", self.convert(self.default))
        except ValueError as exc:
            raise ValueError(f"option {self.name}: default {self.default!r}: {exc}") from None

    @property
    def allowed(self) -> str:
        """What is allowed, in the words the file's comment and error messages use."""
        if self.allowed_text:
            return self.allowed_text
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        if self.kind == "str":
            return "quoted text"
        words = "a whole number" if self.kind == "int" else "a number"
        if self.minimum is not None and self.maximum is not None:
            return f"{words} from {self.minimum} to {self.maximum}"
        if self.minimum is not None:
            return f"{words} of at least {self.minimum}"
        if self.maximum is not None:
            return f"{words} of at most {self.maximum}"
        return words

    def convert(self, value: object) -> OptionValue:
        """The normalised value, or :class:`ValueError` whose text completes "key = value: ..."."""
        wanted = _PY_TYPE[self.kind]
        if self.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:
                # A whole number beyond any float (JSON or TOML allow 10**400): out of range
                # like any other, not an "internal error" with a traceback.
                raise ValueError(f"is out of range; must be {self.allowed}") from None
        if type(value) is not wanted:
            raise ValueError(f"must be {_ARTICLE_TYPE.get(self.kind, 'a str')} ({self.allowed})")
        assert isinstance(value, bool | int | float | str)
        if self.kind == "choice" and value not in self.choices:
            raise ValueError(f"must be {self.allowed}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be a finite number ({self.allowed})")
        if isinstance(value, str) and not _utf8_writable(value):
            # A lone surrogate (from JSON's "\ud800", or a command-line byte that is not
            # UTF-8) would be accepted here and then fail the options file's save.
            raise ValueError(
                f"contains characters that cannot be written as UTF-8 ({self.allowed})"
            )
        if isinstance(value, int) and not isinstance(value, bool) and not _INT64 <= value < -_INT64:
            # TOML 1.0 integers are 64-bit: a larger one would be saved into an options file
            # that other TOML readers refuse (Python's reads it), so it is refused here.
            raise ValueError(f"is out of range (TOML integers are 64-bit); must be {self.allowed}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            too_low = self.minimum is not None and value < self.minimum
            too_high = self.maximum is not None and value > self.maximum
            if too_low or too_high:
                raise ValueError(f"is out of range; must be {self.allowed}")
        if self.check is not None:
            reason = self.check(value)
            if reason is not None:
                raise ValueError(reason)
        return value

    def to_dict(self, value: OptionValue) -> dict[str, Any]:
        """The JSON object GetAddInOptions carries for this option at ``value``."""
        described: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "default": self.default,
            "value": value,
            "description": self.description,
            "live": self.live,
            "allowed": self.allowed,
        }
        if self.choices:
            described["choices"] = list(self.choices)
        if self.minimum is not None:
            described["minimum"] = self.minimum
        if self.maximum is not None:
            described["maximum"] = self.maximum
        return described


def _utf8_writable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class OptionValues(Mapping[str, OptionValue]):
    """A validated, immutable set of option values: every declared key, nothing else.

    Read as a mapping (``values["duplicates"]``) or by attribute (``values.duplicates``).
    Only :meth:`OptionsSchema.validate` builds one, so holding one means it is valid.
    """

    __slots__ = ("_values",)
    _values: dict[str, OptionValue]

    def __init__(self, values: Mapping[str, OptionValue]) -> None:
        object.__setattr__(self, "_values", dict(values))

    def __getitem__(self, key: str) -> OptionValue:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> OptionValue:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("OptionValues are immutable; validate a new mapping instead")

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self) -> str:
        return f"OptionValues({self._values!r})"

    def changed_from(self, other: Mapping[str, OptionValue]) -> tuple[str, ...]:
        """The keys whose value differs from ``other``'s."""
        return tuple(key for key, value in self._values.items() if other.get(key) != value)


@dataclass(frozen=True, slots=True)
class OptionsSchema:
    """The options one add-in declares, in the order the file and the listings show them."""

    options: tuple[AddInOption, ...]

    def __post_init__(self) -> None:
        names = [option.name for option in self.options]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"options declared twice: {', '.join(duplicates)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(option.name for option in self.options)

    def get(self, name: str) -> AddInOption | None:
        """The declaration of ``name``, or None."""
        return next((option for option in self.options if option.name == name), None)

    def defaults(self) -> OptionValues:
        """Every option at its default: what a missing file means."""
        return OptionValues({option.name: option.default for option in self.options})

    def validate(
        self,
        mapping: Mapping[str, object],
        *,
        addin: str,
        source: str,
        base: Mapping[str, OptionValue] | None = None,
    ) -> OptionValues:
        """Check ``mapping`` over ``base`` (default: the defaults); all problems at once.

        Raises:
            AddInOptionsError: listing every unknown key (with a suggestion) and bad value.
        """
        values = dict(base if base is not None else self.defaults())
        problems = []
        for key, value in mapping.items():
            option = self.get(key)
            if option is None:
                reason = self._unknown(key)
                problems.append(OptionProblem(source, addin, key, value, reason, unknown=True))
                continue
            try:
                values[key] = option.convert(value)
            except ValueError as exc:
                problems.append(OptionProblem(source, addin, key, value, str(exc)))
        if problems:
            raise AddInOptionsError.of(problems)
        return OptionValues({name: values[name] for name in self.names})

    def _unknown(self, key: str) -> str:
        guesses = difflib.get_close_matches(key.strip().lower().replace("-", "_"), self.names, 1)
        hint = f" (did you mean {guesses[0]}?)" if guesses else ""
        return f"unknown option{hint}; known: {', '.join(self.names) or 'none'}"

    def describe(self, values: Mapping[str, OptionValue]) -> list[dict[str, Any]]:
        """Every option as the JSON objects GetAddInOptions answers with."""
        return [option.to_dict(values[option.name]) for option in self.options]

    def restart_keys(self, keys: Iterable[str]) -> list[str]:
        """Those of ``keys`` whose change applies only at the next start."""
        return [k for k in keys if (o := self.get(k)) is not None and not o.live]


def as_schema(declaration: object) -> OptionsSchema:
    """An add-in's ``options_declaration`` (a schema or a sequence of options) as a schema."""
    if isinstance(declaration, OptionsSchema):
        return declaration
    if isinstance(declaration, Iterable) and not isinstance(declaration, str | bytes):
        options = tuple(declaration)
        if all(isinstance(option, AddInOption) for option in options):
            return OptionsSchema(options)
    raise TypeError(
        f"options_declaration must be an OptionsSchema or AddInOption values, not {declaration!r}"
    )


def parse_assignment(text: str) -> tuple[str, str]:
    """Split a command-line ``KEY=VALUE`` into its key and the value's text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


def parse_cli_value(kind: str | None, text: str) -> object:
    """The value a command-line ``KEY=VALUE`` means, read as TOML.

    ``kind`` is the option's kind (None for an unknown key). For ``str`` and ``choice``
    options a quoted TOML string is unquoted and anything else is
    taken as it was typed, so ``duplicates=refuse`` works without shell-quoted quotes; other
    kinds must be TOML (``true``, ``5``, ``2.5``), and text that is not is handed on as a
    string for validation to refuse with the option's own words.
    """
    try:
        value: object = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    if kind in ("str", "choice") and not isinstance(value, str):
        return text
    return value


#: The values each add-in was last given (:func:`give_options`), by add-in.
_in_use: weakref.WeakKeyDictionary[Any, OptionValues] = weakref.WeakKeyDictionary()


def give_options(addin: Any, values: OptionValues) -> None:
    """Tell ``addin`` its options (``options_changed``) and remember them as the ones it runs on.

    What it runs on is not always what its file holds: a file broken by hand after the start
    (the add-in keeps its earlier values), or a save that failed. Whoever must put an add-in
    back after a failed change needs the values it had (:func:`options_in_use`). Raises
    whatever the add-in raises, and then remembers nothing.
    """
    addin.options_changed(values)
    # An add-in object that takes no weak reference: nothing remembered.
    with contextlib.suppress(TypeError):
        _in_use[addin] = values


def options_in_use(addin: Any) -> OptionValues | None:
    """The values ``addin`` was last given through :func:`give_options`, or None."""
    try:
        return _in_use.get(addin)
    except TypeError:
        return None
