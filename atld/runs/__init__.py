"""Runs on disk: the card and the directory format (`card`, torch-free), who may write a run
directory and how an interrupted save is finished (`rundir`, torch-free), and the tensors
(`store`: save and load, every claim validated)."""
