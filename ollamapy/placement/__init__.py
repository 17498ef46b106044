"""Where a model runs: device discovery (`gpu.py`) and the pure memory estimate that turns it
into `--n-gpu-layers` / `--tensor-split` (`memory.py`)."""
