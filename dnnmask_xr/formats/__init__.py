"""DNNBrain's text files: ``.dmask.csv`` masks and ``.stim.csv`` stimulus tables.

Pure text: nothing here imports h5py or xarray.
"""
