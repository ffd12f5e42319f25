"""Write a tiny random ControlNet (diffusers format) for an SD, SDXL or FLUX.1 pipeline directory: for the
mechanics only.

python scripts/make_tiny_controlnet.py MODEL_DIR OUT_DIR   # MODEL_DIR: e.g. src/syncguide/demo/models/sd
"""

import sys

from syncguide.models.tiny import save_tiny_controlnet

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/make_tiny_controlnet.py MODEL_DIR OUT_DIR")
    print(save_tiny_controlnet(sys.argv[1], sys.argv[2], std=0.02))
