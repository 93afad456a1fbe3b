"""`modelward serve`: scans over HTTP, backed by the results store (see docs/service.md).

`app.create_app(settings)` builds the FastAPI application; `settings.ServiceSettings`
is what it is built from. Importing this package imports neither FastAPI nor the store.
"""
