"""The core's own plugins, registered through the same hooks as third-party ones and always loaded
(``visret.plugins.BUILTIN_PLUGINS``): the FAISS backend, folders and image lists, report formats."""
