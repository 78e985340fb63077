"""A plugin whose hook returns something that is not a list of sdk.Backend instances."""

from sdk import hookimpl


@hookimpl
def sdk_backends():
    return {"name": "garbage", "priority": 10**6}  # a loose dict instead of a typed Backend
