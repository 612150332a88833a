"""`CamelModel`: the base of the wire models whose JSON names are camelCase (enrolment, events).

Fields are snake_case in Python and camelCase on the wire; input is accepted in either form.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """snake_case attributes, camelCase JSON."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True
    )
