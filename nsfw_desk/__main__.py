"""`python -m nsfw_desk` behaves like the `nsfw-desk` command."""

import sys

from nsfw_desk.cli import main

sys.exit(main())
