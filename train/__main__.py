"""python -m train model=hybrid data=tiny [Hydra overrides]: see train/loop.py."""
import sys

from train.loop import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
