import sys

from modelward.cli.main import main

sys.exit(main())
