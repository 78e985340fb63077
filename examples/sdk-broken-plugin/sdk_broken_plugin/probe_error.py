"""A plugin that loads fine but whose probe raises: the host must list it as unavailable, not crash.

Its priority is the highest of all, so that ``backend="auto"`` would pick it if a failed probe were
ever mistaken for a working one.
"""

from sdk import Backend, hookimpl


class ProbeErrorBackend(Backend):
    name = "broken-probe"
    devices = ("cpu",)
    priority = 10**6

    def _probe(self, device):
        raise RuntimeError("driver exploded while probing")

    def create_session(self, model, device, options):
        raise AssertionError("the SDK created a session on a backend whose probe failed")


@hookimpl
def sdk_backends():
    return [ProbeErrorBackend()]
