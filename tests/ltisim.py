"""The LTI tests' platform: the try-out platform of ``multinet-emotion platform try``."""

from multinet_emotion.app.lti.trial import (  # noqa: F401
    DL,
    INSTRUCTOR,
    LEARNER,
    LTI,
    ROLE,
    Simulator,
    rsa_key,
)
