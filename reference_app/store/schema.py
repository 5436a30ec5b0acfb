"""Every table of the app, registered on one metadata: what migrations diff against."""

from . import models_ledger  # noqa: F401  (registers the custodial ledger's tables)
from .models import Base

metadata = Base.metadata
