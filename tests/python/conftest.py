# SPDX-License-Identifier: LGPL-2.1-or-later

import pytest

from msgtest import drain


@pytest.fixture(autouse=True)
def drained_main_context():
    """Each test starts and ends with nothing pending on the default context."""
    drain()
    yield
    drain()
