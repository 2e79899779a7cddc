"""Hazard ledger (重大事故隐患数据库): tickets from four sources, a pure workflow, evidence, reports.

    model      the ticket as the workflow sees it; statuses, sources, levels and their Chinese names
    workflow   pure state machine: (ticket, action, actor, now) -> (ticket, event) or a refusal
    store      SQL of tickets, history, evidence, interviews (scoped to an enterprise where asked)
    ledger     one transaction per operation around the workflow; the overdue tick; the intake sweep
    intake     the rule engine's on_candidate hook: open a ticket or attach evidence to the open one
    reports    statistics, the 动态清零 count, overdue list, monthly and annual summaries
    export     period summaries as CSV and XLSX
"""
