"""The decisions log on JetStream: the streams, events' encoding and headers, appending
(group commit, optimistic concurrency), reading and tailing, aggregates' repository, and
the projections' snapshots."""
