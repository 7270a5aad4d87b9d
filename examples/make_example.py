"""Make the example files that ship in ``examples/`` (run from the repo root).

An AlexNet-shaped activation file written the way DNNBrain writes one, with
a matching stimulus table and mask. Values are ReLU-like and rounded to
sixteenths (exact in float32) so that the file stays small.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from dnnmask_xr import DnnMask, Stimuli, write_dmask, write_stim
from dnnmask_xr.testing import ALEXNET_SHAPES, relu_activations, write_reference_act

HERE = Path(__file__).parent
N_STIMULI = 6

layers = relu_activations(
    N_STIMULI, {name: ALEXNET_SHAPES[name] for name in ("conv5", "fc3")}, seed=2019
)
layers = {name: (np.round(array * 16) / 16).astype(np.float32) for name, array in layers.items()}
write_reference_act(HERE / "test.act.h5", layers)

write_stim(
    Stimuli(
        header={"type": "image", "path": "images", "title": "dnnmask_xr example stimuli"},
        table=pd.DataFrame(
            {
                "stimID": [f"n{i:02d}.JPEG" for i in range(1, N_STIMULI + 1)],
                "label": [281, 281, 285, 207, 207, 285],
                "condition": ["cat", "cat", "cat", "dog", "dog", "cat"],
                "onset": [0.0, 1.5, 3.0, 4.5, 6.0, 7.5],
            }
        ),
    ),
    HERE / "test.stim.csv",
)

write_dmask(
    DnnMask(
        {
            "conv5": {"channel": [200, 3, 17], "row": [4, 5], "column": [6, 7, 8]},
            "fc3": {"channel": [1, 2, 3]},
        }
    ),
    HERE / "test.dmask.csv",
)
