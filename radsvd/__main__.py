import sys

from radsvd.cli import main

sys.exit(main())
