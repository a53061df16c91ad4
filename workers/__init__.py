"""The worker actor: take announced instances off the bus, apply the rules, deliver copies, run prefetches.

`python -m workers CONFIG --index N` runs one worker (`workers.worker`); the
durable queue it shares with the other workers and the operator commands is
`workers.queue`. A job is a copy to a destination (with the morphs its rule
asked for) or a prefetch from a Q/R destination (`workers.jobs`,
`workers.prefetch`); both are retried with their destination's policy and
end dead with their reason when they cannot succeed.
"""
