# SPDX-License-Identifier: LGPL-2.1-or-later

import pytest

from msgtest import drain, raise_callback_errors


@pytest.fixture(autouse=True)
def drained_main_context():
    """Each test starts and ends with nothing pending on the default context,
    and fails if any callback raised an exception meanwhile."""
    drain()
    yield
    drain()
    raise_callback_errors()
