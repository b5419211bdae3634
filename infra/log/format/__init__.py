"""How an event is written in the log: the JSON transcoding and mapper, the compact row
forms, and the one header that carries its version, sender and causes. Part of the
log's format: what is written with it is read back forever."""
