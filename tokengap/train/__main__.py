"""python -m tokengap.train model=hybrid data=tiny [Hydra overrides]: see tokengap/train/loop.py."""
import sys

from tokengap.train.loop import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
