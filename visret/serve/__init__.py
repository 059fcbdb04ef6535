"""``visret serve``: a web page and a JSON API over a saved index (FastAPI on uvicorn).

FastAPI and uvicorn are an optional extra (``pip install 'visret[serve]'``), imported only here.
"""
