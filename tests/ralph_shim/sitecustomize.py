"""Loaded by the ralph LRS that tests/test_xapi_lrs.py starts (its PYTHONPATH names this
folder), before ralph itself.

Ralph 5.1's file-system LRS backend (``runserver -b fs``) writes statements with its data
backend's default operation, CREATE, which refuses to write to a file that exists: the
first POST creates ``fs_lrs.jsonl`` and every later one fails with 500 ("already exists
and overwrite is not allowed"). A store must append, so this makes APPEND that backend's
default; everything else (the xAPI API, its validation, duplicate-id handling, the
queries) is ralph's own code, unchanged.
"""

try:
    from ralph.backends.data.base import BaseOperationType
    from ralph.backends.lrs.fs import FSLRSBackend
except ImportError:  # not ralph's interpreter
    pass
else:
    FSLRSBackend.default_operation_type = BaseOperationType.APPEND
