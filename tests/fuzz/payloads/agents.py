"""The specs of an agent's commands about itself (register, deregister, assignments,
services) and of the catalog query, with the services an agent offers."""

from __future__ import annotations

from hypothesis import strategies as st

from infra import names as n
from tests.fuzz.payloads.probe import SELF
from tests.fuzz.payloads.spec import Field, Spec, mutated_object, obj
from tests.fuzz.payloads.text import (
    CAPABILITY_CHARS,
    LABEL_KEY_CHARS,
    any_char,
    invalid_id,
    invalid_kind,
    invalid_label_key,
    pattern_text,
    too_long,
    valid_id,
)
from tests.fuzz.payloads.values import (
    capabilities_valid,
    capabilities_wrong,
    label_value,
    labels_valid,
    labels_wrong,
    not_null,
    wrong_for_bool,
    wrong_for_dict,
    wrong_for_float,
    wrong_for_int,
    wrong_for_list,
    wrong_for_str,
)

meta_wrong = wrong_for_dict(pattern_text(LABEL_KEY_CHARS, 20), invalid_label_key,
                            label_value, wrong_for_str() | too_long(256), 32)
tag = st.text(alphabet=any_char, min_size=1, max_size=20)
tags_valid = st.lists(tag, max_size=3)
tags_wrong = wrong_for_list(wrong_for_str() | st.just("") | too_long(64), tag, 32)

SERVICE = Spec("service", (
    Field("name", valid_id, wrong_for_str() | invalid_id, required=True),
    Field("address", st.text(alphabet=any_char, min_size=1, max_size=30),
          wrong_for_str() | st.just("") | too_long(253), required=True),
    Field("port", st.integers(0, 65535), wrong_for_int(0, 65535), required=True),
    Field("tags", tags_valid, tags_wrong),
    Field("meta", labels_valid, meta_wrong),
))
service_valid = obj(SERVICE)
services_valid = st.lists(service_valid, max_size=2)
services_wrong = wrong_for_list(
    wrong_for_str() | st.deferred(lambda: mutated_object(SERVICE)), service_valid, 32)

# In an agent's command: left out, or the agent its subject names (a body naming another
# agent, well-formed or not, is refused unauthorized: `other_agent`).
own_agent_id = Field("agent_id", st.just(SELF), None)

# An agent's commands, about itself.
AGENT_SPECS = (
    Spec(n.REGISTER, (
        own_agent_id,
        Field("capabilities", capabilities_valid, capabilities_wrong),
        Field("capacity", st.integers(0, 100_000), wrong_for_int(0, 100_000)),
        Field("labels", labels_valid, labels_wrong),
        Field("services", services_valid, services_wrong),
        Field("kinds", st.lists(pattern_text(CAPABILITY_CHARS, 30), max_size=3),
              wrong_for_list(wrong_for_str() | invalid_kind,
                             pattern_text(CAPABILITY_CHARS, 30), 64)),
        Field("replace", st.booleans(), wrong_for_bool),
        Field("instance_id", valid_id | st.none(), wrong_for_str(nullable=True) | invalid_id),
        Field("progress_every_s", st.floats(0, 3600, exclude_min=True) | st.none(),
              not_null(wrong_for_float(0, 3600, low_open=True))),
    )),
    Spec(n.DEREGISTER, (
        # No upper bound: an incarnation of 10**100 is well-formed (and not the current one).
        own_agent_id, Field("incarnation", st.integers(1, 2**63 - 1), wrong_for_int(1, None),
                            required=True),
    )),
    Spec(n.ASSIGNMENTS, (own_agent_id,)),
    Spec(n.SERVICES, (
        own_agent_id, Field("services", services_valid, services_wrong, required=True),
    )),
)

# A read anyone allowed may send.
CATALOG_SPEC = Spec(n.CATALOG_QUERY, (
    Field("service", valid_id | st.none(), wrong_for_str(nullable=True) | invalid_id),
    Field("tags", tags_valid, tags_wrong),
    Field("labels", labels_valid, labels_wrong),
    Field("healthy_only", st.booleans(), wrong_for_bool),
))
