"""Runtime: how a job runs (warm start, memory, device, logging), never what it computes."""
