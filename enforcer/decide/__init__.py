"""The decision core: pure functions from sanction state to indicators, plans and verdicts.

`expand` turns a sanction state and the catalog into the desired indicator set, `reconcile`
compares it with the store's actual set, `scope` says which indicators a device enforces, and
`matcher` answers "is this name governed, and by what" on the hot path. Nothing here touches a
database, a socket or the clock (an import-linter contract forbids it).
"""
