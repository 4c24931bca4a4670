"""Topics Riffle writes for other processes: dead letters and alert transitions.

:mod:`.deadletters` (the dead-letter topic's layout, producer and reader) and
:mod:`.alerts` (transitions for the notifier). Each module defines its
message layout (value, key, headers) once.
"""
