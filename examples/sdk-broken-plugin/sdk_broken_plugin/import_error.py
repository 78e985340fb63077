"""A plugin whose module fails on import, like one built against a library that is not installed."""

import sdk_engine_that_is_not_installed  # noqa: F401  (the failure is the point)
