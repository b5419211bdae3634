"""Stream provisioning is idempotent and brings settings up to date."""

from __future__ import annotations

from nats.js.api import StorageType, StoreCompression

from infra.log.streams import events_config, provision


class TestProvision:
    async def test_twice_is_the_same_as_once(self, nc, names):
        js = nc.jetstream()
        await provision(js, names, heartbeat_history=10)
        await provision(js, names, heartbeat_history=10)

        events = await js.stream_info(names.events_stream)
        assert events.config.subjects == [names.events_wildcard]
        assert events.config.storage == StorageType.FILE
        assert events.config.duplicate_window == 120.0
        assert events.config.deny_delete and events.config.deny_purge

    async def test_a_changed_setting_updates_the_stream(self, nc, names):
        js = nc.jetstream()
        await provision(js, names, heartbeat_history=10)
        await provision(js, names, heartbeat_history=25)

        heartbeats = await js.stream_info(names.heartbeats_stream)
        assert heartbeats.config.max_msgs_per_subject == 25
        assert heartbeats.config.storage == StorageType.MEMORY

    async def test_an_uncompressed_log_of_an_earlier_version_is_compressed_from_now_on(
            self, nc, names):
        js = nc.jetstream()
        earlier = events_config(names)
        earlier.compression = StoreCompression.NONE
        await js.add_stream(earlier)
        await provision(js, names, heartbeat_history=10)

        events = await js.stream_info(names.events_stream)
        assert events.config.compression == StoreCompression.S2

    async def test_streams_of_two_prefixes_do_not_overlap(self, nc, names):
        from infra.names import Names

        other = Names(names.prefix + "x")
        js = nc.jetstream()
        await provision(js, names, heartbeat_history=10)
        await provision(js, other, heartbeat_history=10)

        assert (await js.stream_info(other.events_stream)).config.subjects == [
            other.events_wildcard]
