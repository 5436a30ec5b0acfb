"""Every table of the app, registered on one metadata: what migrations diff against."""

from . import models_ledger  # noqa: F401  (registers the custodial ledger's tables)
from . import models_market  # noqa: F401  (auctions, ratings, messages, webhooks, erasures)
from . import models_onchain  # noqa: F401
from .models import Base

metadata = Base.metadata
