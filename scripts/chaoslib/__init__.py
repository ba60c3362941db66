"""``scripts/chaos``: fault injection against the compose cluster while a workload runs (see ``main``).

    main       the command line; ``--plan`` needs nothing but this package
    run        a run: find the cluster, play it under trio, restore the cluster, write the report
    runner     Chaos: the rounds (fault, heal, converge) around the workload and the checks
    plan       the seeded fault plan (pure)
    faults     docker kill / pause / network disconnect / stop, and their heals
    workload   the instances: register, beat, churn, clean up
    checks     the invariants, judged on every list answer, and agreement after a heal
    nodes      an httpx client per node, and which nodes answered lately
    compose    the cluster from the host, synchronously: discovery, timings, restore
    state      the instances, the time bounds and the record of the run that the others share
    report     the JSON report and the printed summary
    console    the terminal output

Not installed with the project: ``scripts/chaos`` puts ``scripts/`` on ``sys.path``.
"""
