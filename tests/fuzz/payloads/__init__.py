"""Hypothesis strategies for hostile command payloads.

Every payload is refused *by construction* (the expected outcome travels with it in a
`Probe`): malformed bytes, bodies over the 64 KiB limit, and valid-looking objects with at
least one mutation that the strict models must refuse (a missing required field, an
unknown field, a value of the wrong type or out of range, an identifier that is not one
NATS subject token, deep nesting...). Bodies are rendered by hand (`render`), not by a
JSON library, so they can hold what libraries refuse to write: NaN and Infinity, integers
of any size, duplicate keys, nesting thousands deep, lone surrogate escapes.

An agent's command goes out on its own subject (`<prefix>.agent.<id>.<command>`), so its
`agent_id` member is either left out or the subject's (`SELF` here); a body naming another
agent is refused `unauthorized` before it is validated (`other_agent`). A subject whose
sender token is not an id is refused `invalid_request` whatever its body (`bad_sender`).

The semantic probes (valid shape, refused for the state of the aggregate: not_found,
conflict, stale_token, or accepted as a documented no-op repeat) need the ids and tokens
of a live world; they are built by `semantic_probes` in `tests/fuzz/probes.py`.

The modules, each importing only those above it:

- `probe`: `Probe`, the outcome codes, `SELF`, and `render` (with `Raw` and `Pairs`);
- `text`, `values`: the strategies every command family uses (identifiers and their near
  misses, hostile text; values of each JSON type and the wrong ones for each type);
- `spec`: `Field`, `Spec`, a valid object of a spec (`obj`) and a mutated one;
- `agents`, `tasks`, `admin`, `schedules`, `limits`: the specs of each command family;
- `commands`: `SPECS`, every command endpoint's spec by subject;
- `bodies`: bodies refused for their form (`hostile`);
- `senders`: bodies refused for their subject (`other_agent`, `bad_sender`).
"""
