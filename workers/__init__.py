"""The worker actor: take announced instances off the bus, apply the rules, deliver, retry, keep dead letters.

`python -m workers CONFIG --index N` runs one worker (`workers.worker`); the
durable queue it shares with the other workers and the operator commands is
`workers.queue`.
"""
