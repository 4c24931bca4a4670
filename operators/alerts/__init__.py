"""Alert evaluation: one state machine per alert instance, driven by event time. Pure, no I/O.

:mod:`.machine` (the states and their transitions), :mod:`.transitions` (the record
every alert sink stores), :mod:`.instances` (an instance's identity and what it keeps),
:mod:`.observations` (what the alert stage feeds in), :mod:`.conditions` (comparisons,
forecast intervals), :mod:`.annotations` (rendering a rule's templates) and
:mod:`.evaluator` (every instance of one rule: windows, partials, merges, absence,
forecast joins).
"""
