"""Partwise trainer: builds Slakh-layout data, trains the CSN, evaluates it, exports weights."""
