"""A command model as the fuzzer sees it: its fields (`Field`: values it accepts, values
it must refuse), a valid object of it (`obj`), and a valid object mutated so that the
model must refuse it (`mutated_object`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.payloads.probe import Pairs
from tests.fuzz.payloads.text import odd_text
from tests.fuzz.payloads.values import small_json


@dataclass(frozen=True)
class Field:
    """One field of a command model: values it accepts, and values it must refuse."""

    name: str
    valid: st.SearchStrategy[Any]
    wrong: st.SearchStrategy[Any] | None  # None: anything goes (`payload`, `result`)
    required: bool = False
    # Hostile values that ride along in an otherwise refused body (NaN, bad escapes...).
    noise: st.SearchStrategy[Any] | None = None


@dataclass(frozen=True)
class Spec:
    command: str
    fields: tuple[Field, ...]
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(f.name for f in self.fields))


def obj(spec: Spec, noisy: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """A valid object of `spec`: required fields, and some of the optional ones. `noisy`
    mixes in the fields' hostile noise: only for bodies refused for another reason."""

    def value(f: Field) -> st.SearchStrategy[Any]:
        return f.valid | f.noise if noisy and f.noise is not None else f.valid

    required = {f.name: value(f) for f in spec.fields if f.required}
    optional = {f.name: value(f) for f in spec.fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional)


def unknown_key(spec: Spec) -> st.SearchStrategy[str]:
    """A member name the model does not have, often one that looks like one it has."""
    near = st.builds(lambda name, how: how(name), st.sampled_from(sorted(spec.names)),
                     st.sampled_from([str.upper, str.title, lambda s: s + " ",
                                      lambda s: " " + s, lambda s: s + "\u200b",
                                      lambda s: s.replace("_", "-"), lambda s: s + "\x00",
                                      lambda s: s[:-1], lambda s: "$" + s]))
    # agent_id where the model has none: a task report names no agent, its subject does.
    return (near | odd_text | st.sampled_from(["__proto__", "constructor", "_type_", "ok",
                                               "position", "id", "agent_id", "identity"])
            ).filter(lambda k: k not in spec.names)


_MUTATED: dict[str, st.SearchStrategy[Pairs]] = {}


def mutated_object(spec: Spec) -> st.SearchStrategy[Pairs]:
    """A valid object with 1 to 3 mutations, at least one of which the model must refuse.

    Each mutation leaves the object invalid whatever comes after it: a wrong value
    replaces every occurrence of its member, a duplicate puts the wrong value last (the
    last one wins), a removal only takes required members.
    """
    if spec.command in _MUTATED:
        return _MUTATED[spec.command]
    wrongs = [f for f in spec.fields if f.wrong is not None]
    typed = st.sampled_from(wrongs) if wrongs else st.nothing()
    required = [f.name for f in spec.fields if f.required]
    gone = st.sampled_from(required) if required else st.nothing()
    mutations = st.lists(st.sampled_from(["extra"] + (["wrong", "dup"] if wrongs else [])
                                         + (["missing"] if required else [])),
                         min_size=1, max_size=3)
    base = obj(spec, noisy=True)
    keys = unknown_key(spec)
    where = st.integers(0, 2**16)

    @st.composite
    def build(draw: st.DrawFn) -> Pairs:
        members = list(draw(base).items())
        members = list(draw(st.permutations(members))) if len(members) > 1 else members
        for kind in draw(mutations):
            if kind == "extra":
                at = draw(where) % (len(members) + 1)
                members.insert(at, (draw(keys), draw(small_json)))
            elif kind in ("wrong", "dup"):
                target = draw(typed)
                assert target.wrong is not None
                bad = draw(target.wrong)
                members = [(k, v) for k, v in members if k != target.name]
                if kind == "wrong":
                    members.insert(draw(where) % (len(members) + 1), (target.name, bad))
                else:  # a valid value first, the wrong one last: the last one wins
                    members.insert(0, (target.name, draw(target.valid)))
                    members.append((target.name, bad))
            else:
                name = draw(gone)
                members = [(k, v) for k, v in members if k != name]
        return Pairs(tuple(members))

    _MUTATED[spec.command] = build()
    return _MUTATED[spec.command]
