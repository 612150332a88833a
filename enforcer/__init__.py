"""Enforcer: open Shadow-IT discovery and cloud-app enforcement.

The data path, one package or module per stage::

    policies/*.yaml -> policy -> expand -> reconcile (Plan) -> store -> api/sync -> shim
                          ^ catalog                                            -> events -> discovery
"""

__version__ = "0.1.0"
