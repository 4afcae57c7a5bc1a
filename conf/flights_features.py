"""The flights' own on-demand features, named in model.yml as `flights_features:<function>`.

Each function takes pandas Series (one per parameter, as model.yml `inputs` maps them) and returns
one. The logged model carries this file's code, so changing it changes only the versions trained
after the change.
"""

import numpy as np
import pandas as pd

DISTANCE_EDGES = (500, 1000, 2000)  # miles: short-haul < 500 <= medium < 1000 <= long < 2000 <= very long


def distance_bucket(distance: pd.Series) -> pd.Series:
    """0 (< 500 miles), 1 (< 1000), 2 (< 2000), 3 (farther); missing stays missing."""
    miles = pd.to_numeric(pd.Series(distance), errors="coerce").to_numpy(dtype="float64")
    return pd.Series(
        np.where(np.isnan(miles), np.nan, np.searchsorted(DISTANCE_EDGES, miles, side="right")),
        index=pd.Series(distance).index,
        dtype="float64",
    )
