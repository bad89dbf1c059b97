"""The one exception type for mistakes a user can make (bad files, rows, options).

The CLI turns it into a single line on stderr and a non-zero exit; library callers can
catch it to tell user errors apart from bugs.
"""


class MultiNetError(Exception):
    """A problem with the user's input: the message names the file/row/frame and a fix."""
