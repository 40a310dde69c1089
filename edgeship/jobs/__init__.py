"""Past one machine: a project's check cut into jobs that CI runners and Kubernetes already run.

    plan.py    `edgeship plan`: one export job per target (format x recipe), one validation job per
               (target, device), each keyed by a hash of everything its result depends on, tool
               versions included; which shard runs which job
    store.py   the results store: a folder (local or a shared mount) of finished jobs by key, an
               O_EXCL claim per key so racing shards run each job once, results moved in by rename
    leases.py  an exclusive lease on a device while a job times on it
    run.py     `edgeship run`: a shard's jobs (or one), their dependencies run or waited for
    merge.py   `edgeship merge`: check's gates, reports and exit code on the stored results;
               --against: what changed since another store, and which tool versions differ
    emit.py    the plan as a GitHub Actions matrix or a Kubernetes Indexed Job
"""
