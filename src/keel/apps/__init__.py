"""The bundled apps. Each sub-folder is a metadata package (see ``keel.services.apps``); the only Python is
install-time: sample data generators and demo users, never anything in the request path."""
