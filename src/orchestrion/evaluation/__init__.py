"""`orchestrion eval`: one evaluation for every model, its figures and its report.

    evaluate    likelihood, musical statistics, validity and novelty of one model (or two, compared)
    heldout     what `--data` gives: real pieces for the statistics and where each likelihood reads from
    metrics     musical statistics of symbolic pieces, pure functions of a symusic Score
    report      report.json and an HTML page with tables, plots and players

It reaches models only through `orchestrion.registry` and the Composer interface (a composer answers
`likelihood` and `check` itself) and never branches on a model's kind; it imports no system package's
model modules.
"""
