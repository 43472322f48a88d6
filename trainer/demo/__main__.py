import sys

from trainer.demo.run import main

sys.exit(main())
