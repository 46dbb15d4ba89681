"""``python app.py`` starts the service the way the original project did: the same as ``facegender serve``.

Settings come from the ``FACEGENDER_*`` environment (port 3001 unless ``FACEGENDER_PORT`` says otherwise);
the command's own options (``--host``, ``--port``, ``--workers``) are accepted too.
"""

import sys

from facegender.cli import main

if __name__ == "__main__":
    main(["serve", *sys.argv[1:]])
