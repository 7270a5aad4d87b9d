"""The naive way to mask a file, as a program: h5py fancy indexing, numpy, gzip.

usage: python bench/naive_mask.py ACT OUT MASK_JSON

``MASK_JSON`` maps layer names to ``{"chn": [...], "row": [...], "col": [...]}``
(1-based, any order). See ``dnnmask_xr.testing.naive_mask``.
"""

import json
import sys

from dnnmask_xr.testing import naive_mask

if __name__ == "__main__":
    act, out, mask = sys.argv[1:]
    naive_mask(act, out, json.loads(mask))
