"""Sessions: the HTTP routes that start and end a session and take its samples
(:mod:`.http`), the WebSocket that ingests a session's samples (:mod:`.routes`) and the live
state every server process sees (:mod:`.store`: live states, rate-limit hits, notifications
between processes; PostgreSQL only)."""
