"""The specs of operators' commands: on agents (drain, undrain, deregister, enroll with a
policy) and on identities (revoke, identity.create, token.create)."""

from __future__ import annotations

from hypothesis import strategies as st

from domain.identities.identity import ROLES
from infra import names as n
from tests.fuzz.payloads.spec import Field, Spec, mutated_object, obj
from tests.fuzz.payloads.text import (
    LABEL_KEY_CHARS,
    any_char,
    invalid_id,
    invalid_label_key,
    odd_text,
    pattern_text,
    too_long,
    valid_id,
)
from tests.fuzz.payloads.values import (
    capabilities_valid,
    capabilities_wrong,
    label_value,
    not_null,
    small_json,
    wrong_for_bool,
    wrong_for_dict,
    wrong_for_float,
    wrong_for_int,
    wrong_for_list,
    wrong_for_str,
)

agent_id = Field("agent_id", valid_id, wrong_for_str() | invalid_id, required=True)
identity_name = Field("name", valid_id, wrong_for_str() | invalid_id, required=True)

# An enrollment's policy: each part null (unbounded) or a bound.
policy_label_values = st.lists(label_value, max_size=3)
POLICY = Spec("policy", (
    Field("services", st.lists(valid_id, max_size=3) | st.none(),
          not_null(wrong_for_list(wrong_for_str() | invalid_id, valid_id, 64))),
    Field("capabilities", capabilities_valid | st.none(), not_null(capabilities_wrong)),
    Field("labels",
          st.dictionaries(pattern_text(LABEL_KEY_CHARS, 20), policy_label_values, max_size=3)
          | st.none(),
          not_null(wrong_for_dict(
              pattern_text(LABEL_KEY_CHARS, 20), invalid_label_key, policy_label_values,
              wrong_for_list(wrong_for_str() | too_long(256), label_value, 64), 64))),
    Field("max_capacity", st.integers(0, 100_000) | st.none(),
          not_null(wrong_for_int(0, 100_000))),
))
policy_valid = obj(POLICY) | st.none()
policy_wrong = st.one_of(odd_text, st.integers(), st.booleans(),
                         st.lists(small_json, max_size=3),
                         st.deferred(lambda: mutated_object(POLICY)))

role = st.sampled_from(sorted(ROLES))
wrong_role = wrong_for_str() | st.sampled_from(["Agent", "agent ", " agent", "admin", "root",
                                                "", "agents", "operator\u200b"]) | odd_text
roles_valid = st.lists(role, max_size=5)
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
public_key_valid = pattern_text(BASE32, 55, 55).map(lambda s: "U" + s)
public_key_wrong = wrong_for_str() | st.one_of(
    pattern_text(BASE32, 55, 55).map(lambda s: "A" + s),  # an account key, not a user's
    pattern_text(BASE32, 55, 55).map(lambda s: "S" + s),  # a seed
    pattern_text(BASE32, 54, 54).map(lambda s: "U" + s),
    pattern_text(BASE32, 56, 56).map(lambda s: "U" + s),
    public_key_valid.map(str.lower),
    st.builds(lambda k, c, at: k[:at] + c + k[at + 1:], public_key_valid,
              st.sampled_from("0189=-_ a\u0430"), st.integers(1, 55)),
    public_key_valid.map(lambda k: k + "\n"),  # '$' of Python's re matches before it
    st.just(""),
)
scope_wrong = wrong_for_str() | st.sampled_from(["Read", "READ", "read ", "write", "",
                                                 "admin\u200b", "*"]) | odd_text

# Operators' commands.
ADMIN_SPECS = (
    Spec(n.ADMIN_DRAIN, (agent_id,)),
    Spec(n.ADMIN_UNDRAIN, (agent_id,)),
    Spec(n.ADMIN_DEREGISTER, (agent_id,)),
    Spec(n.ADMIN_ENROLL, (
        agent_id,
        Field("ttl_s", st.floats(0, 604800, exclude_min=True) | st.integers(1, 604800),
              wrong_for_float(0, 604800, low_open=True)),
        Field("roles", roles_valid, wrong_for_list(wrong_role, role, 5)),
        Field("rotate", st.booleans(), wrong_for_bool),
        Field("policy", policy_valid, policy_wrong),
    )),
    Spec(n.ADMIN_REVOKE, (
        identity_name, Field("reason", st.text(alphabet=any_char, max_size=50),
                    wrong_for_str() | too_long(256)),
    )),
    Spec(n.ADMIN_IDENTITY_CREATE, (
        identity_name,
        Field("roles", st.lists(role, min_size=1, max_size=5),
              wrong_for_list(wrong_role, role, 5) | st.just([]), required=True),
        Field("public_key", public_key_valid, public_key_wrong, required=True),
    )),
    Spec(n.ADMIN_TOKEN_CREATE, (
        identity_name,
        Field("scope", st.sampled_from(["read", "admin"]), scope_wrong, required=True),
    )),
)
