"""The app catalog: the cloud apps Enforcer knows, the domains that serve them and their risk.

`model` holds the `App` record and the `CATEGORIES`; `risk` the `RiskAttributes` of an app and
the 0-10 score computed from them; `loader` reads the bundled catalog (``data/*.yaml``, one file
per category) with `load_catalog()` into a `Catalog`, to which organisations add their own apps
with `Catalog.with_custom`. See docs/catalog.md.
"""

from enforcer.catalog.loader import Catalog, CatalogError, UnknownAppError, load_apps, load_catalog
from enforcer.catalog.model import CATEGORIES, App
from enforcer.catalog.risk import RiskAttributes, explain_risk, facts_known, risk_score

__all__ = [
    "CATEGORIES",
    "App",
    "Catalog",
    "CatalogError",
    "RiskAttributes",
    "UnknownAppError",
    "explain_risk",
    "facts_known",
    "load_apps",
    "load_catalog",
    "risk_score",
]
