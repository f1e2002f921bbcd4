"""The kernel's figures: /proc and cgroup files parsed defensively.

Nothing here knows about runs or logs; the sampler (``record``) and the readers that check
whether a writer is alive use these.
"""
