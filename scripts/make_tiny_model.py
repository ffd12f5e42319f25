"""Write a tiny random Stable Diffusion pipeline (diffusers format) for smoke tests.

python scripts/make_tiny_model.py DIR
"""

import sys

from syncguide.models.tiny import save_tiny_pipeline

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/make_tiny_model.py DIR")
    print(save_tiny_pipeline(sys.argv[1]))
