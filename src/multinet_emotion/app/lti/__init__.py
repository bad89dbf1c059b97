"""LTI 1.3: the tool inside a learning platform (Moodle, Canvas, Open edX, Brightspace,
Sakai). pylti1p3 does the protocol; this package adapts it to Starlette and our store.

* :mod:`.spec`: a platform's registration, checked (standard library only, for the CLI).
* :mod:`.keys`: the tool's RSA key pair (data directory, 0600) and its JWKS.
* :mod:`.platforms`: registrations (``multinet-emotion platform add|list|remove``) and
  pylti1p3's tool configuration read from them.
* :mod:`.adapters`: pylti1p3's request, cookie, session, storage and redirect on Starlette.
* :mod:`.launch`: login, launch, roles to pages, learner sign-in on consent, the
  instructor's course dashboard token, Deep Linking.
* :mod:`.routes` and :mod:`.pages`: the HTTP routes and their small HTML pages.

Nothing is imported here, so that the command line can read :mod:`.spec` quickly.
"""
