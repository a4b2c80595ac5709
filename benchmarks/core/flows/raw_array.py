"""Case (c) baseline: the same array through plain ``np.save``/``np.load``."""

import numpy as np

ARRAY_LEN = 200 * 1024 * 1024 // 8
PATH = "array.npy"


def main():
    np.save(PATH, np.random.default_rng(0).random(ARRAY_LEN))
    print("sum", float(np.load(PATH).sum()))


if __name__ == "__main__":
    main()
