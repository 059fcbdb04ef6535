"""The on-disk index format, in one place.

``layout`` names the files and checks the manifest, ``files`` writes crash-safely and never
through links, ``entries`` is the SQLite table, ``staging`` makes runs resumable, ``reader``
opens a generation and ``writer`` puts a new one in place.
"""
