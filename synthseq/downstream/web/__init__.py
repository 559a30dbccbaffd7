"""Web pages of the downstream models: the spinal-cord-injury outcome page (``synthseq outcome serve``).

``synthseq.downstream.web.app.create_app(models, ...)`` builds the Flask app; ``app.PAGE`` describes the page
for a web-page registry. Nothing is imported here, so the CLI can read :mod:`.schema` without Flask.
"""
