"""Settings: DESIGN defaults, environment variables, flags over environment, validation."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from infra import settings as settings_module
from infra.settings import Settings, add_flags, from_args, from_env


def parse_flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_flags(parser)
    return parser.parse_args(list(argv))


# (environment variable, raw value, field, parsed value), one row per setting.
ENV_CASES: list[tuple[str, str, str, Any]] = [
    ("ORCH_NATS_URL", "nats://a:4222,nats://b:4222", "nats_url", "nats://a:4222,nats://b:4222"),
    ("ORCH_DATA_DIR", "/var/lib/orch", "data_dir", Path("/var/lib/orch")),
    ("ORCH_SUBJECT_PREFIX", "prod", "subject_prefix", "prod"),
    ("ORCH_HTTP_HOST", "0.0.0.0", "http_host", "0.0.0.0"),
    ("ORCH_HTTP_PORT", "9090", "http_port", 9090),
    ("ORCH_HEARTBEAT_INTERVAL", "0.5", "heartbeat_interval", 0.5),
    ("ORCH_SUSPECT_AFTER", "4.5", "suspect_after", 4.5),
    ("ORCH_DEAD_AFTER", "9", "dead_after", 9.0),
    ("ORCH_ACCEPT_TIMEOUT", "12.5", "accept_timeout", 12.5),
    ("ORCH_EMBEDDED_NATS_PORT", "14222", "embedded_nats_port", 14222),
    ("ORCH_NATS_SYNC", "default", "nats_sync", "default"),
    ("ORCH_HEARTBEAT_HISTORY", "7", "heartbeat_history", 7),
    ("ORCH_LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
    ("ORCH_PLACEMENT_STRATEGY", "round_robin", "placement_strategy", "round_robin"),
    ("ORCH_LEASE_TTL", "2.5", "lease_ttl", 2.5),
    ("ORCH_RETRY_BACKOFF", "0.5", "retry_backoff", 0.5),
    ("ORCH_RETRY_BACKOFF_MAX", "30", "retry_backoff_max", 30.0),
    ("ORCH_FINISHED_TASK_RETENTION", "3600", "finished_task_retention", 3600.0),
]

# (flag, raw value, field, parsed value), one row per setting.
FLAG_CASES: list[tuple[str, str, str, Any]] = [
    ("--nats-url", "nats://flag:4222", "nats_url", "nats://flag:4222"),
    ("--data-dir", "/tmp/flag", "data_dir", Path("/tmp/flag")),
    ("--subject-prefix", "flagged", "subject_prefix", "flagged"),
    ("--http-host", "::1", "http_host", "::1"),
    ("--http-port", "0", "http_port", 0),
    ("--heartbeat-interval", "0.25", "heartbeat_interval", 0.25),
    ("--suspect-after", "4", "suspect_after", 4.0),
    ("--dead-after", "30", "dead_after", 30.0),
    ("--accept-timeout", "1.5", "accept_timeout", 1.5),
    ("--embedded-nats-port", "4333", "embedded_nats_port", 4333),
    ("--nats-sync", "default", "nats_sync", "default"),
    ("--heartbeat-history", "3", "heartbeat_history", 3),
    ("--log-level", "WARNING", "log_level", "WARNING"),
    ("--placement-strategy", "bin_pack", "placement_strategy", "bin_pack"),
    ("--lease-ttl", "7", "lease_ttl", 7.0),
    ("--retry-backoff", "2", "retry_backoff", 2.0),
    ("--retry-backoff-max", "90", "retry_backoff_max", 90.0),
    ("--finished-task-retention", "0", "finished_task_retention", 0.0),
]


class TestDefaults:
    def test_defaults_are_the_design_values(self) -> None:
        settings = Settings()

        assert settings.suspect_after == 3.0
        assert settings.dead_after == 5.0
        assert settings.heartbeat_interval == 1.0
        assert settings.accept_timeout == 5.0
        assert settings.http_host == "127.0.0.1"
        assert settings.http_port == 8080
        assert settings.subject_prefix == "orch"
        assert settings.data_dir == Path("./.orchestrator")
        assert settings.nats_url is None

    def test_an_empty_environment_gives_the_defaults(self) -> None:
        assert from_env({}) == Settings()

    def test_unrelated_variables_are_ignored(self) -> None:
        assert from_env({"PATH": "/bin", "ORCH_UNKNOWN": "1", "orch_http_port": "1"}) == Settings()

    def test_no_flags_and_no_environment_give_the_defaults(self) -> None:
        assert from_args(parse_flags(), {}) == Settings()

    def test_every_setting_has_a_flag(self) -> None:
        assert set(vars(parse_flags())) == {f.name for f in fields(Settings)}

    def test_every_setting_has_an_orch_variable_constant(self) -> None:
        for f in fields(Settings):
            assert getattr(settings_module, f.name.upper()) == f"ORCH_{f.name.upper()}"


class TestFromEnv:
    @pytest.mark.parametrize(("variable", "raw", "field", "expected"), ENV_CASES,
                             ids=[c[0] for c in ENV_CASES])
    def test_reads_each_variable(self, variable: str, raw: str, field: str, expected: Any) -> None:
        settings = from_env({variable: raw})

        assert getattr(settings, field) == expected
        assert type(getattr(settings, field)) is type(expected)

    def test_the_variable_names_are_the_module_constants(self) -> None:
        for variable, _, _, _ in ENV_CASES:
            assert variable in vars(settings_module).values()

    def test_an_empty_nats_url_means_embedded(self) -> None:
        assert from_env({"ORCH_NATS_URL": ""}).nats_url is None

    def test_reads_several_variables_together(self) -> None:
        settings = from_env({
            "ORCH_HEARTBEAT_INTERVAL": "2", "ORCH_SUSPECT_AFTER": "6", "ORCH_DEAD_AFTER": "10",
        })

        assert (settings.heartbeat_interval, settings.suspect_after, settings.dead_after) == (
            2.0, 6.0, 10.0,
        )

    def test_applies_over_a_given_base(self) -> None:
        base = Settings(subject_prefix="base", http_port=1)

        settings = from_env({"ORCH_HTTP_PORT": "2"}, base=base)

        assert settings.subject_prefix == "base"
        assert settings.http_port == 2

    @pytest.mark.parametrize(
        ("variable", "raw"),
        [("ORCH_HTTP_PORT", "eighty"), ("ORCH_DEAD_AFTER", "soon"),
         ("ORCH_HEARTBEAT_HISTORY", "1.5")],
    )
    def test_unparseable_numbers_raise_value_error(self, variable: str, raw: str) -> None:
        with pytest.raises(ValueError):
            from_env({variable: raw})

    def test_reads_the_process_environment_when_none_is_given(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("ORCH_SUBJECT_PREFIX", "from-os")

        assert from_env().subject_prefix == "from-os"


class TestFromArgs:
    @pytest.mark.parametrize(("flag", "raw", "field", "expected"), FLAG_CASES,
                             ids=[c[0] for c in FLAG_CASES])
    def test_reads_each_flag(self, flag: str, raw: str, field: str, expected: Any) -> None:
        settings = from_args(parse_flags(flag, raw), {})

        assert getattr(settings, field) == expected
        assert type(getattr(settings, field)) is type(expected)

    @pytest.mark.parametrize(
        ("flag", "variable", "field", "flag_value", "env_value", "expected"),
        [
            ("--http-port", "ORCH_HTTP_PORT", "http_port", "7000", "9000", 7000),
            ("--subject-prefix", "ORCH_SUBJECT_PREFIX", "subject_prefix", "f", "e", "f"),
            ("--dead-after", "ORCH_DEAD_AFTER", "dead_after", "8", "20", 8.0),
            ("--nats-url", "ORCH_NATS_URL", "nats_url", "nats://f:1", "nats://e:1",
             "nats://f:1"),
            ("--data-dir", "ORCH_DATA_DIR", "data_dir", "/f", "/e", Path("/f")),
        ],
    )
    def test_a_flag_overrides_its_variable(
        self, flag: str, variable: str, field: str, flag_value: str, env_value: str,
        expected: Any,
    ) -> None:
        settings = from_args(parse_flags(flag, flag_value), {variable: env_value})

        assert getattr(settings, field) == expected

    def test_variables_without_a_flag_still_apply(self) -> None:
        settings = from_args(
            parse_flags("--http-port", "7000"),
            {"ORCH_SUBJECT_PREFIX": "env", "ORCH_HTTP_PORT": "9000"},
        )

        assert settings.http_port == 7000
        assert settings.subject_prefix == "env"

    def test_flags_are_validated_together(self) -> None:
        settings = from_args(
            parse_flags("--suspect-after", "10", "--dead-after", "20"), {}
        )

        assert (settings.suspect_after, settings.dead_after) == (10.0, 20.0)

    def test_a_flag_that_conflicts_with_the_environment_raises_value_error(self) -> None:
        with pytest.raises(ValueError, match="suspect_after"):
            from_args(parse_flags("--suspect-after", "9"), {"ORCH_DEAD_AFTER": "8"})

    def test_a_flag_can_complete_a_combination_the_environment_started(self) -> None:
        # ORCH_DEAD_AFTER=2 alone conflicts with the default suspect_after 3.0, but the
        # flag brings suspect_after to 1.5: the final settings are valid.
        settings = from_args(parse_flags("--suspect-after", "1.5"), {"ORCH_DEAD_AFTER": "2"})

        assert (settings.suspect_after, settings.dead_after) == (1.5, 2.0)

    def test_help_names_the_variable_and_the_default(self) -> None:
        parser = argparse.ArgumentParser()
        add_flags(parser)

        text = parser.format_help()

        assert "ORCH_SUSPECT_AFTER" in text
        assert "default 3.0" in text


class TestValidation:
    @pytest.mark.parametrize(
        "values",
        [
            pytest.param({"suspect_after": 6.0, "dead_after": 5.0}, id="suspect-after-dead"),
            pytest.param({"suspect_after": 0.0}, id="suspect-zero"),
            pytest.param({"suspect_after": -1.0}, id="suspect-negative"),
            pytest.param({"heartbeat_interval": 3.0}, id="heartbeat-equals-suspect"),
            pytest.param({"heartbeat_interval": 4.0}, id="heartbeat-over-suspect"),
            pytest.param({"heartbeat_interval": 0.0}, id="heartbeat-zero"),
            pytest.param({"heartbeat_interval": -0.5}, id="heartbeat-negative"),
            pytest.param({"nats_sync": "sometimes"}, id="bad-sync"),
            pytest.param({"heartbeat_history": 0}, id="no-history"),
            pytest.param({"finished_task_retention": -1.0}, id="retention-negative"),
        ],
    )
    def test_invalid_combinations_raise_value_error(self, values: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            Settings(**values)

    @pytest.mark.parametrize(
        "env",
        [
            pytest.param({"ORCH_SUSPECT_AFTER": "6"}, id="suspect-after-dead"),
            pytest.param({"ORCH_HEARTBEAT_INTERVAL": "3"}, id="heartbeat-equals-suspect"),
            pytest.param({"ORCH_HEARTBEAT_INTERVAL": "5", "ORCH_SUSPECT_AFTER": "4"},
                         id="heartbeat-over-suspect"),
        ],
    )
    def test_invalid_combinations_from_the_environment_raise_value_error(
        self, env: dict[str, str]
    ) -> None:
        with pytest.raises(ValueError):
            from_env(env)

    @pytest.mark.parametrize(
        "argv",
        [
            pytest.param(["--suspect-after", "6"], id="suspect-after-dead"),
            pytest.param(["--heartbeat-interval", "3"], id="heartbeat-equals-suspect"),
            pytest.param(["--dead-after", "2"], id="dead-before-suspect"),
        ],
    )
    def test_invalid_combinations_from_flags_raise_value_error(self, argv: list[str]) -> None:
        with pytest.raises(ValueError):
            from_args(parse_flags(*argv), {})

    def test_suspect_after_may_equal_dead_after(self) -> None:
        settings = Settings(suspect_after=5.0, dead_after=5.0)

        assert settings.suspect_after == settings.dead_after

    def test_settings_are_immutable(self) -> None:
        settings = Settings()

        with pytest.raises(AttributeError):
            settings.http_port = 1  # type: ignore[misc]
