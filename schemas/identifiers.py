"""The identifier rules of the contract, each written once: the pattern, a compiled form, and the
sentence a person reads when a value breaks it.

The event models (``events.py``), the HTTP API's models and input checks (``streams/web``) and
the CLI (``streams/cli``) all take them from here. Pure: no I/O.
"""

from __future__ import annotations

import re

# Contract §2: a user id, also the request record's key.
USER_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"
USER_ID_RULE = "1 to 128 characters of A-Z a-z 0-9 . _ : @ -"
USER_ID = re.compile(USER_ID_PATTERN)

# A run names a staged rollout (``migrator enqueue --run NAME``): short, safe in a URL and a label.
RUN_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
RUN_ID_RULE = "1 to 64 characters of A-Z a-z 0-9 . _ : -"
RUN_ID = re.compile(RUN_ID_PATTERN)
