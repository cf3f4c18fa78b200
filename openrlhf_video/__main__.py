import sys

from openrlhf_video.cli import main

sys.exit(main())
