"""A Segment-compatible event source: the tracking API (track, identify, group, page, screen,
alias, batch) at /segment/v1/, so Segment, RudderStack, Jitsu and their SDKs send leads and
events with no code. `calls` reads a call, `services` stores it through the one ingest path,
`auth` and `views` are the HTTP edge."""
