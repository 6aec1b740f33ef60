"""The ops HTTP API beside the workbench (FastAPI, served by uvicorn): ``api.app:app``.

It calls the same ``core`` functions the pages call; nothing here is a second implementation.
"""
