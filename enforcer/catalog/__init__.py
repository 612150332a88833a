"""The app catalog: the cloud apps Enforcer knows, the domains that serve them and their risk.

The bundled catalog (``data/*.yaml``, one file per category) is read with `load_catalog()`;
organisations add their own apps with `Catalog.with_custom`. See docs/catalog.md.
"""

from enforcer.catalog.loader import Catalog, CatalogError, UnknownAppError, load_apps, load_catalog
from enforcer.catalog.model import CATEGORIES, App, RiskAttributes
from enforcer.catalog.risk import explain_risk, risk_score

__all__ = [
    "CATEGORIES",
    "App",
    "Catalog",
    "CatalogError",
    "RiskAttributes",
    "UnknownAppError",
    "explain_risk",
    "load_apps",
    "load_catalog",
    "risk_score",
]
