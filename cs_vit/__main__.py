"""``python -m cs_vit`` is the same as the ``cs-vit`` command."""
import sys

from cs_vit.cli import main

sys.exit(main())
