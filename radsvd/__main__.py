import sys

from radsvd.cli import entry

sys.exit(entry())
