"""A provider plugin for the job tests: the offline provider, with a slow Writer.

Importing this module registers it as ``slow`` through the real extension point
(``core.providers.register``); worker processes import it because their environment has
``WORKBENCH_PROVIDER_PLUGINS=tests.slow_provider``. Each Writer call first sleeps
``SLOW_PROVIDER_S`` seconds (read at call time), long enough to cancel a job or kill its worker
mid-run; the other agents answer at once.
"""

from __future__ import annotations

import os
import time

from core import providers
from core.providers.base import ProviderRequest, ProviderResult
from core.providers.local import LocalProvider

DELAY_ENV = "SLOW_PROVIDER_S"
"""Seconds each Writer call sleeps before answering."""


class SlowProvider(LocalProvider):
    name = "slow"

    def complete(self, request: ProviderRequest) -> ProviderResult:
        if request.agent == "writer":
            time.sleep(float(os.environ.get(DELAY_ENV, "0")))
        return super().complete(request)


providers.register(SlowProvider.name, SlowProvider)
